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
    if (o().times) {
        struct timespec ts[2];
        ts[0].tv_sec = 0;
        ts[0].tv_nsec = UTIME_OMIT;
        ts[1].tv_sec = static_cast<time_t>(e.mtime);
        ts[1].tv_nsec = 0;
        if (futimens(fd, ts) < 0)
            ctx.error("rsync: failed to set times on \"" + path_of(e) + "\": " + errstr(errno));
    }
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
        // fchmodat cannot refuse symlinks portably; open the entry itself instead.
        auto fd = ctx.root.open_beneath(path, O_PATH | O_NOFOLLOW);
        if (fd) {
            std::string proc = "/proc/self/fd/" + std::to_string(fd->get());
            if (::chmod(proc.c_str(), want) < 0)
                ctx.error("rsync: chmod \"" + path + "\" failed: " + errstr(errno));
        }
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
