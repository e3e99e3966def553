// The server-side argument list of an rsync transfer ("--server [--sender] -flags ... . path"),
// as options.c server_options() builds it on the client. Parsing never guesses: an option
// we do not implement is an error naming it, which the session sends to the client.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace sfs::server::rsync {

struct ServerOptions {
    bool sender = false;         // --sender: we send (a pull)
    bool recurse = false;        // -r
    bool xfer_dirs = false;      // -d
    bool links = false;          // -l
    bool copy_links = false;     // -L: a pull sends what symlinks point to (beneath the module)
    bool copy_dirlinks = false;  // -k: the same for symlinks to directories only
    bool keep_dirlinks = false;  // -K: a push keeps a symlink to a directory where the list has a directory
    bool perms = false;          // -p
    bool executability = false;  // -E
    bool times = false;          // -t
    bool atimes = false;         // -U (-UU: also the sender's --open-noatime; same here)
    bool omit_dir_times = false; // -O
    bool owner = false;          // -o
    bool group = false;          // -g
    bool devices = false;        // -D (devices; specials unless --no-specials)
    bool specials = false;
    bool hard_links = false;     // -H
    bool checksum = false;       // -c
    bool dry_run = false;        // -n
    bool compress = false;       // -z
    bool new_compress = false;   // --new-compress (-zz, rsync's zlibx): no block history
    int compress_level = 6;
    int verbose = 0;             // -v
    std::string log_format;      // --log-format=FMT: how the client wants items reported (%i: itemized)
    bool numeric_ids = false;
    bool delete_mode = false;    // any --delete*
    bool delete_excluded = false;
    bool force = false;
    bool ignore_errors = false;
    bool inplace = false;
    bool backup = false;         // -b: replaced or deleted files are kept
    std::string backup_dir;      // --backup-dir DIR (implies -b); as sent, sanitized later
    std::string suffix;          // --suffix; default "~", or "" with --backup-dir
    bool suffix_set = false;
    bool partial = false;
    // --partial-dir DIR (implies --partial): an interrupted file is kept as DIR/NAME and is
    // the basis of the next attempt; DIR is relative to each file's directory, or (absolute)
    // to the module root. --delay-updates stages every received file there (".~tmp~" when
    // no DIR) and renames them all into place at the end. --temp-dir DIR: temp files go to
    // DIR (relative to the destination, or absolute from the module root). See partial.cc.
    std::string partial_dir;
    bool delay_updates = false;
    // --remove-source-files (1) / --remove-sent-files (2): on a push the client deletes
    // each source file we report (MSG_SUCCESS) as received or, with 1, already current.
    int remove_source = 0;
    std::string temp_dir;
    bool whole_file = false;     // -W
    bool ignore_times = false;   // -I
    bool size_only = false;
    bool update_only = false;    // -u
    bool existing = false;
    bool ignore_existing = false;
    bool sparse = false;         // -S (accepted; holes are not recreated)
    bool one_file_system = false;
    int max_delete = -1;
    std::int32_t block_size = 0; // -B
    std::int64_t max_size = -1, min_size = -1;
    std::int32_t checksum_seed = 0;
    // --link-dest / --copy-dest / --compare-dest DIR (at most 20, one kind per transfer):
    // a received file found unchanged in a basis dir is hard-linked / copied / skipped,
    // and a similar one serves as the delta basis (generator.c try_dests_reg). As sent;
    // resolved beneath the module once the destination is known (alt_dest.cc).
    enum class AltDest { none, compare, copy, link } alt_dest = AltDest::none;
    std::vector<std::string> basis_dirs;
    // -R: names keep their path (a "/./" in a pull's argument marks where it starts), the
    // parent dirs are sent too unless --no-implied-dirs. --files-from=- (a pull): the names
    // follow the exclude list on the input, NUL-separated, an empty one ends them; or
    // --files-from FILE names a file in the module. Both imply -R unless --no-relative.
    std::string usermap, groupmap;   // --usermap / --groupmap SPEC (see id_map.h)
    bool relative = false;
    bool no_relative = false;
    bool implied_dirs = true;
    bool files_from_input = false;   // --files-from=-
    std::string files_from;          // --files-from FILE (module path)
    bool from0 = false;
    // --ignore-missing-args (1): a named source that does not exist is skipped silently;
    // --delete-missing-args (2): it is sent with mode 0 and the receiver deletes that name.
    int missing_args = 0;
    // The client's filter options in order (--filter/-f: kind 0, full rule syntax;
    // --exclude '-' / --include '+': old prefixes; from_file: --exclude-from/--include-from
    // FILE). Applied by the session once the module root is open (FilterList::add_arg).
    struct FilterArg {
        char kind = 0;
        bool from_file = false;
        std::string text;
    };
    std::vector<FilterArg> filter_args;
    std::vector<std::string> paths;  // arguments after the "." placeholder
};

// "--link-dest" etc., for messages.
const char* alt_dest_name(ServerOptions::AltDest kind) noexcept;
inline constexpr std::size_t kMaxBasisDirs = 20;   // rsync MAX_BASIS_DIRS

Result<ServerOptions> parse_server_args(const std::vector<std::string>& args);

}  // namespace sfs::server::rsync
