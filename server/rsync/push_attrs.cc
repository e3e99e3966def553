// Modes, owners and times of received entries (rsync.c set_file_attrs).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "protocol/rsync_match.h"
#include "server/rsync/push.h"

namespace sfs::server::rsync {


mode_t Push::new_mode(const FileEntry& e, bool exists, mode_t cur) const {
    if (o().perms) return e.mode & 07777;
    if (exists) return cur & 07777;
    mode_t m = (e.mode & 0777) & ~umask_bits;
    if (o().executability && (e.mode & 0111)) m |= (0111 & ~umask_bits);
    return m;
}

void Push::set_fd_attrs(int fd, const FileEntry& e, bool exists, mode_t cur) {
    if (am_root() && (o().owner || o().group)) {
        uid_t u = o().owner ? e.uid : static_cast<uid_t>(-1);
        gid_t g = o().group ? e.gid : static_cast<gid_t>(-1);
        if (fchown(fd, u, g) < 0)
            ctx.error("rsync: chown \"" + path_of(e) + "\" failed: " + errstr(errno));
    }
    if (fchmod(fd, new_mode(e, exists, cur)) < 0)
        ctx.error("rsync: chmod \"" + path_of(e) + "\" failed: " + errstr(errno));
    if (o().times || o().atimes) {
        struct timespec ts[2];
        ts[0].tv_sec = o().atimes ? static_cast<time_t>(e.atime) : 0;
        ts[0].tv_nsec = o().atimes ? 0 : UTIME_OMIT;
        ts[1].tv_sec = static_cast<time_t>(e.mtime);
        ts[1].tv_nsec = o().times ? 0 : UTIME_OMIT;
        if (futimens(fd, ts) < 0)
            ctx.error("rsync: failed to set times on \"" + path_of(e) + "\": " + errstr(errno));
    }
}

// chmod of a non-symlink entry without /proc: a chrooted module (`use chroot`, the
// default for a root daemon) has no /proc, so the old O_PATH + /proc/self/fd/N trick
// failed with ENOENT there. Linux has no lchmod (fchmodat(AT_SYMLINK_NOFOLLOW) is
// ENOTSUP in glibc 2.36 and fchmod refuses O_PATH fds), so:
//  - directories and regular files are opened for real, O_RDONLY|O_NOFOLLOW|O_NONBLOCK
//    (O_DIRECTORY for dirs) beneath the module root, checked to be the entry `st`
//    describes (dev/ino), and changed with fchmod: no race at all;
//  - fifos, devices, sockets (opening them could block or have side effects), and files
//    we may not open (a non-root daemon and a write-only file): fchmodat(parent, name, 0)
//    after `st` (fstatat AT_SYMLINK_NOFOLLOW) showed it is not a symlink. A symlink raced
//    in between would be followed, but `parent` is an openat2 RESOLVE_BENEATH fd inside
//    the module and only a module writer can race it; accepted, as rsync itself does a
//    plain chmod(2) by path here.
// Returns 0 or -1 with errno set.
int Push::chmod_entry(const std::string& path, int parent, const char* name, const struct stat& st,
                      mode_t want) {
    if (S_ISLNK(st.st_mode)) return 0;  // Linux symlinks have no mode of their own
    if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode)) {
        int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
        if (S_ISDIR(st.st_mode)) flags |= O_DIRECTORY;
        auto fd = ctx.root.open_beneath(path, flags);
        if (fd) {
            struct stat now {};
            if (::fstat(fd->get(), &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
                return ::fchmod(fd->get(), want);
            errno = ESTALE;  // replaced under us: not the entry we decided about
            return -1;
        }
        if (fd.error() != EACCES && fd.error() != EPERM) {
            errno = fd.error();
            return -1;
        }
    }
    // "" is the module root itself (`parent` is then the root's own O_PATH fd).
    return ::fchmodat(parent, *name == '\0' ? "." : name, want, 0);
}

// Attributes on an existing entry by path (dirs at the end, up-to-date files, symlinks).
// `created`: we made this entry (a directory made 0700 so we could fill it), so its
// final mode is applied even without -p.
void Push::set_path_attrs(const std::string& path, const FileEntry& e, bool is_link, bool created) {
    std::string base;
    auto dir = ctx.root.open_parent(path, base);
    if (!dir) return;
    const char* name = base == "." ? "" : base.c_str();
    int empty = base == "." ? AT_EMPTY_PATH : 0;
    if (am_root() && (o().owner || o().group)) {
        uid_t u = o().owner ? e.uid : static_cast<uid_t>(-1);
        gid_t g = o().group ? e.gid : static_cast<gid_t>(-1);
        if (fchownat(dir->get(), name, u, g, AT_SYMLINK_NOFOLLOW | empty) < 0)
            ctx.error("rsync: chown \"" + path + "\" failed: " + errstr(errno));
    }
    if (is_link) return;
    struct stat st {};
    if (fstatat(dir->get(), name, &st, AT_SYMLINK_NOFOLLOW | empty) < 0) return;
    mode_t want = new_mode(e, !created, st.st_mode);
    if ((o().perms || created) && (st.st_mode & 07777) != want) {
        if (chmod_entry(path, dir->get(), name, st, want) < 0)
            ctx.error("rsync: chmod \"" + path + "\" failed: " + errstr(errno));
    }
    if (o().times && !(S_ISDIR(e.mode) && o().omit_dir_times) && st.st_mtime != e.mtime) {
        struct timespec ts[2];
        ts[0].tv_nsec = UTIME_OMIT;
        ts[0].tv_sec = 0;
        ts[1].tv_sec = static_cast<time_t>(e.mtime);
        ts[1].tv_nsec = 0;
        if (utimensat(dir->get(), name, ts, AT_SYMLINK_NOFOLLOW | empty) < 0)
            ctx.error("rsync: failed to set times on \"" + path + "\": " + errstr(errno));
    }
}

}  // namespace sfs::server::rsync
