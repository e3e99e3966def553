// Attribute ops. setattr is a namespace-ordered op (its record must not overtake a rename),
// so it runs under ns_mu; getattr/readlink/statfs/access are read-only.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <climits>
#include <vector>

#include "common/syscalls.h"
#include "fs/op_helpers.h"
#include "fs/ops.h"

namespace sfs::fs::ops {

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
    guarded(req, "getattr", [&] {
        FsContext& ctx = ctx_of(req);
        SysResult<struct stat> st;
        if (fi) {
            st = sys::fstat(static_cast<int>(fi->fh));
        } else {
            auto fd = ctx.table.path_fd(*ctx.table.get(ino));
            if (!fd) return (void)fuse_reply_err(req, fd.error());
            st = sys::fstatat(fd->get(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        }
        if (!st) return (void)fuse_reply_err(req, st.error());
        fuse_reply_attr(req, &*st, ctx.timeout);
    });
}

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) noexcept {
    guarded(req, "setattr", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        auto pfd = ctx.table.path_fd(node);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        const int ifd = pfd->get();
        const int ofd = fi ? static_cast<int>(fi->fh) : -1;
        // With the writeback cache the kernel owns c/mtime and writes them back with a
        // SETATTR(mtime, ctime) after every rename, unlink and link of a regular file. That
        // mtime is almost always SOURCE's own (the rename changed only ctime, which SOURCE
        // already set): nothing to change, nothing to record (docs/fs.md, "Time flushes").
        constexpr int kTimeFlush = FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME;
        if ((to_set & FUSE_SET_ATTR_MTIME) && (to_set & ~kTimeFlush) == 0) {
            auto st = sys::fstatat(ifd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            if (st && st->st_mtim.tv_sec == attr->st_mtim.tv_sec && st->st_mtim.tv_nsec == attr->st_mtim.tv_nsec) {
                return (void)fuse_reply_attr(req, &*st, ctx.timeout);
            }
        }
        sys::ProcFdPath proc(ifd);
        std::uint32_t mask = 0;
        std::lock_guard lock(ctx.ns_mu);
        auto finish = [&](int err) {
            // Partial success (e.g. chmod done, truncate failed) still changed SOURCE.
            auto st = sys::fstatat(ifd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            if (mask && st) {
                ChangeRecord rec;
                rec.kind = ChangeKind::Setattr;
                set_node_attrs(rec, *st);
                rec.attr_mask = mask;
                if (auto p = ctx.table.path_of(node)) {
                    rec.path = std::move(*p);
                    ctx.sink.on_change(rec);
                }
            }
            if (err) return (void)fuse_reply_err(req, err);
            if (!st) return (void)fuse_reply_err(req, st.error());
            fuse_reply_attr(req, &*st, ctx.timeout);
        };
        if (to_set & FUSE_SET_ATTR_MODE) {
            auto r = sys::check(ofd >= 0 ? ::fchmod(ofd, attr->st_mode) : ::chmod(proc.c_str(), attr->st_mode));
            if (!r) return finish(r.error());
            mask |= kAttrMode;
        }
        if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
            uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
            gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
            auto before = sys::fstatat(ifd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            auto r = sys::check(::fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
            if (!r) return finish(r.error());
            if (to_set & FUSE_SET_ATTR_UID) mask |= kAttrUid;
            if (to_set & FUSE_SET_ATTR_GID) mask |= kAttrGid;
            // SOURCE's chown cleared set-ID bits itself (as natively, for any caller; the
            // kernel leaves that to us under FUSE_HANDLE_KILLPRIV_V2): record the mode too.
            auto after = sys::fstatat(ifd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
            if (before && after && before->st_mode != after->st_mode) mask |= kAttrMode;
        }
        if (to_set & FUSE_SET_ATTR_SIZE) {
            auto r = sys::check(ofd >= 0 ? ::ftruncate(ofd, attr->st_size) : ::truncate(proc.c_str(), attr->st_size));
            if (!r) return finish(r.error());
            mask |= kAttrSize;
        }
        // Set-ID bits (docs/fs.md, "Set-ID bits on write and truncate"). The kernel strips
        // ATTR_KILL_SUID/SGID before it sends a SETATTR, so what is left says why it came:
        // - FATTR_KILL_SUIDGID (libfuse: FUSE_SET_ATTR_KILL_SUID) with a size: a truncate
        //   by a caller without CAP_FSETID. With a chown it comes for every caller, and
        //   SOURCE's chown above already cleared what a native chown clears.
        // - ctime alone (writeback cache): chown(f, -1, -1), which natively clears the
        //   bits for any caller (root keeps a group-ID bit without group-execute).
        // - nothing at all: the kernel's file_remove_privs() before a write, fallocate or
        //   copy_file_range into a set-ID file (without the writeback cache also chown(f,
        //   -1, -1)). It does not say whether the caller has CAP_FSETID; uid 0 is taken as
        //   having it.
        constexpr int kKill = FUSE_SET_ATTR_KILL_SUID | FUSE_SET_ATTR_KILL_SGID;
        const bool is_root = fuse_req_ctx(req)->uid == 0;
        const bool truncate_kill = (to_set & FUSE_SET_ATTR_KILL_SUID) && (to_set & FUSE_SET_ATTR_SIZE) &&
                                   !(to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID));
        const bool sets_nothing = (to_set & ~kKill) == 0;
        const bool ctime_only = (to_set & ~kKill) == FUSE_SET_ATTR_CTIME;
        if (truncate_kill || ctime_only || (sets_nothing && !is_root)) {
            auto r = clear_setid_bits(req, ifd, ctime_only && is_root);
            if (!r) return finish(r.error());
            if (r->second) mask |= kAttrMode;
        }
        if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
            struct timespec tv[2];
            tv[0].tv_sec = tv[1].tv_sec = 0;
            tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
            if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
                tv[0].tv_nsec = UTIME_NOW;
            } else if (to_set & FUSE_SET_ATTR_ATIME) {
                tv[0] = attr->st_atim;
            }
            if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
                tv[1].tv_nsec = UTIME_NOW;
            } else if (to_set & FUSE_SET_ATTR_MTIME) {
                tv[1] = attr->st_mtim;
            }
            auto r = sys::check(ofd >= 0 ? ::futimens(ofd, tv) : ::utimensat(AT_FDCWD, proc.c_str(), tv, 0));
            if (!r) return finish(r.error());
            if (to_set & FUSE_SET_ATTR_ATIME) mask |= kAttrAtime;
            if (to_set & FUSE_SET_ATTR_MTIME) mask |= kAttrMtime;
        }
        finish(0);
    });
}

void readlink(fuse_req_t req, fuse_ino_t ino) noexcept {
    guarded(req, "readlink", [&] {
        FsContext& ctx = ctx_of(req);
        auto fd = ctx.table.path_fd(*ctx.table.get(ino));
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        char buf[PATH_MAX + 1];
        auto n = sys::check_size(::readlinkat(fd->get(), "", buf, sizeof(buf)));
        if (!n) return (void)fuse_reply_err(req, n.error());
        if (*n >= sizeof(buf)) return (void)fuse_reply_err(req, ENAMETOOLONG);
        buf[*n] = '\0';
        fuse_reply_readlink(req, buf);
    });
}

void statfs(fuse_req_t req, fuse_ino_t ino) noexcept {
    guarded(req, "statfs", [&] {
        FsContext& ctx = ctx_of(req);
        auto fd = ctx.table.path_fd(*ctx.table.get(ino));
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        struct statvfs sv;
        if (auto r = sys::check(::fstatvfs(fd->get(), &sv)); !r) return (void)fuse_reply_err(req, r.error());
        fuse_reply_statfs(req, &sv);
    });
}

// Only called without default_permissions (the kernel checks itself otherwise). The daemon
// is root, so the check is done against the caller's ids and groups by hand.
void access(fuse_req_t req, fuse_ino_t ino, int mask) noexcept {
    guarded(req, "access", [&] {
        FsContext& ctx = ctx_of(req);
        auto fd = ctx.table.path_fd(*ctx.table.get(ino));
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        auto st = sys::fstatat(fd->get(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        if (!st) return (void)fuse_reply_err(req, st.error());
        if (mask == F_OK) return (void)fuse_reply_err(req, 0);
        if ((mask & W_OK) && ctx.options.read_only) return (void)fuse_reply_err(req, EROFS);
        const fuse_ctx* c = fuse_req_ctx(req);
        if (c->uid == 0) {
            // Root: everything but execute of a file with no x bit at all.
            bool ok = !(mask & X_OK) || S_ISDIR(st->st_mode) || (st->st_mode & 0111);
            return (void)fuse_reply_err(req, ok ? 0 : EACCES);
        }
        mode_t bits;
        if (c->uid == st->st_uid) {
            bits = (st->st_mode >> 6) & 7;
        } else {
            bool in_group = c->gid == st->st_gid;
            if (!in_group) {
                std::vector<gid_t> groups(64);
                int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
                if (n > static_cast<int>(groups.size())) {
                    groups.resize(static_cast<std::size_t>(n));
                    n = fuse_req_getgroups(req, n, groups.data());
                }
                for (int i = 0; i < n && !in_group; ++i) in_group = groups[static_cast<std::size_t>(i)] == st->st_gid;
            }
            bits = in_group ? (st->st_mode >> 3) & 7 : st->st_mode & 7;
        }
        bool ok = ((mask & R_OK) == 0 || (bits & 4)) && ((mask & W_OK) == 0 || (bits & 2)) &&
                  ((mask & X_OK) == 0 || (bits & 1));
        fuse_reply_err(req, ok ? 0 : EACCES);
    });
}

}  // namespace sfs::fs::ops
