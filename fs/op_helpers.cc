#include "fs/op_helpers.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <new>
#include <vector>

#include "common/syscalls.h"

namespace sfs::fs {

SysResult<fuse_entry_param> lookup_entry(FsContext& ctx, Inode& parent, int parent_fd,
                                         const char* name) noexcept {
    // Without ns_mu first (lookups are frequent); if a rename or unlink ran meanwhile the
    // name may already be stale, so it is redone under ns_mu, where no name moves.
    // (Callers never hold ns_mu.)
    struct stat stat_out{};
    auto once = [&](bool locked) -> SysResult<Inode*> {
        const std::uint64_t gen = ctx.ns_gen.load();
        auto fd = sys::openat(parent_fd, name, O_PATH | O_NOFOLLOW);
        if (!fd) return std::unexpected(fd.error());
        auto st = sys::fstat(fd->get());
        if (!st) return std::unexpected(st.error());
        stat_out = *st;
        return ctx.table.remember(&parent, name, *st, std::move(*fd), false, locked ? nullptr : &ctx.ns_gen, gen);
    };
    auto inode = once(false);
    if (!inode && inode.error() == EAGAIN) {
        std::lock_guard lock(ctx.ns_mu);
        inode = once(true);
    }
    if (!inode) return std::unexpected(inode.error());
    fuse_entry_param e{};
    e.ino = ctx.table.id_of(*inode);
    e.attr = stat_out;
    e.attr_timeout = ctx.timeout;
    e.entry_timeout = ctx.timeout;
    return e;
}

SysResult<void> give_to_caller(fuse_req_t req, int parent_fd, int fd, struct stat& st) noexcept {
    const fuse_ctx* caller = fuse_req_ctx(req);
    if (caller->uid == st.st_uid && caller->gid == st.st_gid) return {};
    gid_t gid = caller->gid;
    auto parent = sys::fstat(parent_fd);
    if (!parent) return std::unexpected(parent.error());
    if (parent->st_mode & S_ISGID) gid = st.st_gid;
    if (caller->uid == st.st_uid && gid == st.st_gid) return {};
    if (auto r = sys::check(::fchownat(fd, "", caller->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)); !r) {
        return r;
    }
    // chown clears set-user/group-ID on non-directories; the caller asked for them.
    if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID))) {
        sys::ProcFdPath p(fd);
        if (auto r = sys::check(::chmod(p.c_str(), st.st_mode & 07777)); !r) return r;
    }
    st.st_uid = caller->uid;
    st.st_gid = gid;
    return {};
}

bool caller_in_group(fuse_req_t req, gid_t gid) noexcept {
    const fuse_ctx* caller = fuse_req_ctx(req);
    if (caller->gid == gid) return true;
    // fuse_req_getgroups reads /proc/PID/task/PID/status: only reached for the rare
    // set-group-ID file without group-execute.
    gid_t small[64];
    int n = fuse_req_getgroups(req, 64, small);
    if (n <= 0) return false;
    if (n <= 64) return std::find(small, small + n, gid) != small + n;
    try {
        std::vector<gid_t> groups(static_cast<std::size_t>(n));
        n = fuse_req_getgroups(req, n, groups.data());
        if (n <= 0) return false;
        groups.resize(std::min(groups.size(), static_cast<std::size_t>(n)));
        return std::find(groups.begin(), groups.end(), gid) != groups.end();
    } catch (const std::bad_alloc&) {
        return false;  // clear the bit: the safe side
    }
}

mode_t setid_bits_to_clear(fuse_req_t req, const struct stat& st, bool caller_has_fsetid) noexcept {
    if (!S_ISREG(st.st_mode)) return 0;
    mode_t bits = st.st_mode & S_ISUID;
    if (st.st_mode & S_ISGID) {
        if ((st.st_mode & S_IXGRP) || (!caller_has_fsetid && !caller_in_group(req, st.st_gid))) bits |= S_ISGID;
    }
    return bits;
}

SysResult<std::pair<struct stat, bool>> clear_setid_bits(fuse_req_t req, int fd, bool caller_has_fsetid) noexcept {
    auto st = sys::fstat(fd);
    if (!st) return std::unexpected(st.error());
    const mode_t bits = setid_bits_to_clear(req, *st, caller_has_fsetid);
    if (bits == 0) return std::pair{*st, false};
    sys::ProcFdPath p(fd);
    if (auto r = sys::check(::chmod(p.c_str(), st->st_mode & 07777 & ~bits)); !r) return std::unexpected(r.error());
    st = sys::fstat(fd);
    if (!st) return std::unexpected(st.error());
    return std::pair{*st, true};
}

void set_node_attrs(ChangeRecord& rec, const struct stat& st) noexcept {
    rec.ino = st.st_ino;
    rec.mode = st.st_mode;
    rec.uid = st.st_uid;
    rec.gid = st.st_gid;
    rec.rdev = st.st_rdev;
    rec.size = static_cast<std::uint64_t>(st.st_size);
    rec.atime = st.st_atim;
    rec.mtime = st.st_mtim;
    rec.nlink = st.st_nlink;
}

void emit_setxattr(FsContext& ctx, std::uint64_t ino, std::string path, std::string name, std::string value) {
    ChangeRecord rec;
    rec.kind = ChangeKind::Setxattr;
    rec.ino = ino;
    rec.path = std::move(path);
    rec.xattr_name = std::move(name);
    rec.xattr_value = std::move(value);
    ctx.sink.on_change(rec);
}

void emit_write(FsContext& ctx, Inode& inode, std::uint64_t offset, std::uint64_t length) noexcept {
    try {
        // The path and the record's place in the change stream are taken together under
        // ns_mu, the lock every namespace op holds from its syscall to its record: a
        // rename racing with this write is then either wholly before the record (and the
        // path is the new name) or wholly after it. Without the lock the record could
        // carry the old name behind the rename's record, and the mirror would write into
        // whatever holds that name by then.
        std::lock_guard lock(ctx.ns_mu);
        auto path = ctx.table.path_of(inode);
        if (!path) return;
        ChangeRecord rec;
        rec.kind = ChangeKind::Write;
        rec.ino = inode.id.ino;
        rec.path = std::move(*path);
        rec.offset = offset;
        rec.length = length;
        ctx.sink.on_change(rec);
    } catch (const std::exception& e) {
        spdlog::error("write record for inode {}: {}", inode.id.ino, e.what());
    }
}

}  // namespace sfs::fs
