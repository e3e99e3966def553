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
    std::vector<std::string> paths;  // arguments after the "." placeholder
};

Result<ServerOptions> parse_server_args(const std::vector<std::string>& args);

}  // namespace sfs::server::rsync
