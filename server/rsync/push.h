// The receiving side of a push: file list reception, the generator (deletions, directories,
// symlinks, devices, block sums of each basis) and the receiver (tokens applied against the
// basis into a temp file, whole-file MD4 verified, renamed into place).
//
// Design: rsync forks the generator and the receiver; we run the generator on its own thread
// and the receiver on the session thread. The generator only writes to the client, the
// receiver only reads from it, so neither can block the other (the client's sender reads and
// writes concurrently). The receiver tells the generator about redo requests and phase ends
// through RecvEvents. Protocol 27 has two phases: 0 (short 2-byte block sums) and 1 (redo of
// files whose checksum failed, with full 16-byte sums). See generator.c generate_files and
// receiver.c recv_files.
//
// This header is the state the push roles share: the received list, the destination, the
// events from the receiver to the generator. generator.cc, receiver.cc, deletion.cc and
// push_attrs.cc each implement one part of it.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "server/rsync/context.h"
#include "server/rsync/filter_dirs.h"

namespace sfs::server::rsync {

using protocol::FileEntry;

inline constexpr const char* kMungePrefix = "/rsyncd-munged/";

struct RecvEvent {
    enum Kind { redo, phase_done, failed } kind;
    std::int32_t ndx = 0;
};

class RecvEvents {
public:
    void push(RecvEvent e) {
        std::lock_guard l(mu_);
        q_.push_back(e);
        cv_.notify_one();
    }
    RecvEvent pop() {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return !q_.empty(); });
        RecvEvent e = q_.front();
        q_.pop_front();
        return e;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<RecvEvent> q_;
};

// pread until n bytes or EOF; returns the bytes read.
std::size_t read_at(int fd, std::uint8_t* buf, std::size_t n, std::int64_t off);
// "strerror (errno)" as rsync prints it.
std::string errstr(int e);

struct Push {
    explicit Push(Context& c) : ctx(c) {}
    Context& ctx;
    std::vector<FileEntry> list;
    std::string dest;          // module-relative destination dir ("." = root)
    std::string local_name;    // single-file transfer to a new name
    // `dest` is a symlink to a directory inside the module (rsync follows it: the module's
    // filters are name-based, not a symlink boundary); "." is then neither created nor
    // given attributes, and everything below goes through the link, beneath the root.
    bool dest_via_link = false;
    std::int32_t sender_io_error = 0;
    std::map<std::int32_t, std::int32_t> hlink_leader;   // follower ndx -> leader ndx
    RecvEvents events;
    std::atomic<bool> abort{false};
    mode_t umask_bits = 022;

    const ServerOptions& o() const { return ctx.opt; }
    bool am_root() const { return ctx.module->am_root; }

    int deletions = 0;

    std::vector<std::size_t> dirs_made;
    std::set<std::size_t> dirlinks_kept;   // -K: list dirs that are symlinks here (no touch-up)
    std::set<std::size_t> dirs_created;

    std::string path_of(const FileEntry& e) const {
        if (!local_name.empty()) return local_name;
        return join_path(dest, e.name);
    }
    // ---- attributes ----------------------------------------------------------------
    mode_t new_mode(const FileEntry& e, bool exists, mode_t cur) const;
    void set_fd_attrs(int fd, const FileEntry& e, bool exists, mode_t cur);
    // Attributes on an existing entry by path (dirs at the end, up-to-date files, symlinks).
    // `created`: we made this entry (a directory made 0700 so we could fill it), so its
    // final mode is applied even without -p.
    void set_path_attrs(const std::string& path, const FileEntry& e, bool is_link, bool created = false);
    // chmod of an existing non-symlink entry without /proc (works in a chroot); 0 or -1/errno.
    int chmod_entry(const std::string& path, int parent, const char* name, const struct stat& st, mode_t want);
    // ---- backups (backup.cc) -------------------------------------------------------
    // Where the backup of `rel_to_dest` (relative to the destination dir) goes.
    std::string backup_path(const std::string& rel_to_dest) const;
    bool make_backup_parents(const std::string& module_path);
    // With -b: moves (or, `copy`, copies) entry `name` of dir fd `parent` to its backup
    // path. True when there was nothing to do or the backup was made.
    bool make_backup(int parent, const std::string& name, const std::string& rel_to_dest, bool copy = false);
    // ---- deletion ------------------------------------------------------------------
    // Removes `path` (a directory recursively). Returns false on error.
    bool remove_tree(int parent, const std::string& name, const std::string& shown);
    // delete_in_dir() for every directory of the list (delete-before, as protocol 27 does).
    void delete_pass();
    // ---- generator -----------------------------------------------------------------
    // Makes room for a new entry of type `mode` at `path`: removes what is there when its
    // type differs. Returns the existing stat (if kept) through `st`.
    bool make_room(const std::string& path, mode_t mode, struct stat& st, bool& exists);
    void gen_dir(std::size_t i);
    void gen_symlink(const FileEntry& e);
    void make_parents(const std::string& name);
    std::set<std::string> parents_ok;   // directories make_parents() has seen exist
    void delete_missing(const FileEntry& e);
    // The client's dir-merge rules along the directories of the missing names, kept from one
    // missing name to the next (names come in list order, so only the changed tail of the
    // path is read again).
    std::optional<DirFilterStack> missing_dirs;
    void gen_device(const FileEntry& e);
    // unchanged_file() + quick_check_ok(): true when the file needs no transfer.
    bool up_to_date(const std::string& path, const FileEntry& e, const struct stat& st);
    // recv_generator() for a regular file: request it (index + block sums) or fix attrs.
    Result<void> gen_file(std::int32_t ndx, bool redo_pass);
    Result<void> generate();
    // -H: group regular files by the sender's (dev, ino); the first in list order carries
    // the data, the others become links to it (hlink.c, protocol < 30).
    void plan_hardlinks();
    void link_hardlinks();
    // ---- --link-dest / --copy-dest / --compare-dest (alt_dest.cc) -------------------
    std::vector<std::string> basis_dirs;   // module-relative, resolved by resolve_basis_dirs()
    // The basis the generator chose from a basis dir for a file (its block sums were sent
    // from it), so the receiver applies the delta to the same file. Written by the
    // generator before the index goes out, read by the receiver after it comes back.
    std::mutex basis_mu;
    std::map<std::int32_t, std::string> basis_of;
    std::string basis_for(std::int32_t ndx);
    // The destination directory and the name below it that basis-dir lookups use.
    std::string dest_dir() const { return local_name.empty() ? dest : parent_of(local_name); }
    std::string rel_name(const FileEntry& e) const { return local_name.empty() ? e.name : base_of(local_name); }
    // main.c check_alt_basis_dirs(): resolve each DIR relative to the destination (an
    // absolute one to the module root), never above the module root; warn when it is
    // missing; refuse the options when the module's filter excludes it.
    Result<void> resolve_basis_dirs();
    enum class AltResult { none, handled, basis };
    // generator.c try_dests_reg(): `exists`/`st` describe the destination file.
    AltResult try_alt_dests(std::int32_t ndx, const std::string& path, bool exists, const struct stat& st);
    // unchanged_attrs(): the attributes this transfer preserves already match.
    bool unchanged_attrs(const FileEntry& e, const struct stat& st) const;
    // Copies module path `from` to `to` (temp name + rename), attributes from `e`.
    bool copy_local(const std::string& from, const std::string& to, const FileEntry& e);
    // ---- --partial-dir / --delay-updates / --temp-dir (partial.cc) --------------------
    // Module path of the partial file for destination `path`, "" when there is no partial
    // dir or the module's filter excludes that place (rsync partial_dir_fname()).
    std::string partial_path(const std::string& path) const;
    // handle_partial_dir(create): the partial file's directory, made 0700 (one level; a
    // non-directory in its place is removed). False when it cannot be made.
    bool make_partial_dir(const std::string& ppath);
    // Removes a used partial file and, for a relative partial dir, the emptied directory.
    void remove_partial(const std::string& ppath);
    // --delay-updates: (partial path, list index) of each received file, renamed into
    // place by finish_delayed() once every file has arrived.
    std::vector<std::pair<std::string, std::int32_t>> delayed;
    void finish_delayed();
    std::string temp_dir;   // module path of --temp-dir, "" when none
    // Checks the partial/temp dirs against the module's filter and resolves --temp-dir.
    Result<void> resolve_partial_dirs();
    // Moves a finished temp file (`tmp` in dir fd `tdir`) to module path `to`; a temp dir on
    // another filesystem is copied instead. False after reporting the error.
    bool move_into_place(int tdir, const std::string& tmp, const std::string& tmp_path, const std::string& to,
                         const FileEntry& e);
    // --remove-source-files: tells the client file `ndx` is safely here (MSG_SUCCESS).
    // `transferred`: it came over the wire (--remove-sent-files only reports those).
    void report_success(std::int32_t ndx, bool transferred);
    // ---- receiver ------------------------------------------------------------------
    // receive_data() + finish_transfer() for one file. `ok` false: checksum mismatch.
    Result<void> receive_file(std::int32_t ndx, int phase, bool& ok);
    Result<void> receive();
};

// Module-relative form of a directory argument: relative to `dir`, or (absolute) to the
// module root; ".." never climbs above the module root (rsync sanitize_path with the
// destination's depth). "." is the module root.
std::string resolve_under(const std::string& dir, const std::string& arg);

// get_local_name(): where the received list lands (a directory, or one file's new name).
void choose_destination(Push& r, std::string dest_arg);

}  // namespace sfs::server::rsync
