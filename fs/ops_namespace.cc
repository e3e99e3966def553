// Namespace ops: each runs "syscall on SOURCE, then emit the record" under ctx.ns_mu, so the
// records come out in the order the changes took effect on SOURCE. New nodes are created by
// the daemon (root) and then given to the caller (give_to_caller); the kernel already
// checked the caller's permission on the parent when default_permissions is on.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "common/syscalls.h"
#include "common/xattrs.h"
#include "fs/op_helpers.h"
#include "fs/ops.h"

namespace sfs::fs::ops {
namespace {

// After mknod/mkdir/symlink succeeded on SOURCE: owner, table entry, record, reply.
// Called with ns_mu held.
void finish_new_node(fuse_req_t req, FsContext& ctx, Inode& parent, int parent_fd, const char* name,
                     ChangeKind kind, const char* target) {
    auto fd = sys::openat(parent_fd, name, O_PATH | O_NOFOLLOW);
    if (!fd) return (void)fuse_reply_err(req, fd.error());
    auto st = sys::fstat(fd->get());
    if (!st) return (void)fuse_reply_err(req, st.error());
    if (auto r = give_to_caller(req, parent_fd, fd->get(), *st); !r) {
        spdlog::warn("{}: cannot give new node to uid {}: {}", name, fuse_req_ctx(req)->uid, std::strerror(r.error()));
    }
    ChangeRecord rec;
    rec.kind = kind;
    set_node_attrs(rec, *st);
    if (auto p = ctx.table.child_path(parent, name)) rec.path = std::move(*p);
    if (target) rec.target = target;
    auto inode = ctx.table.remember(&parent, name, *st, std::move(*fd));
    ctx.sink.on_change(rec);
    if (!inode) return (void)fuse_reply_err(req, inode.error());
    fuse_entry_param e{};
    e.ino = ctx.table.id_of(*inode);
    e.attr = *st;
    e.attr_timeout = ctx.timeout;
    e.entry_timeout = ctx.timeout;
    fuse_reply_entry(req, &e);
}

}  // namespace

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
    guarded(req, "lookup", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        auto e = lookup_entry(ctx, p, pfd->get(), name);
        if (!e) {
            if (e.error() == ENOENT) {
                // Negative entry: cached by the kernel for the entry timeout.
                fuse_entry_param neg{};
                neg.entry_timeout = ctx.timeout;
                return (void)fuse_reply_entry(req, &neg);
            }
            return (void)fuse_reply_err(req, e.error());
        }
        fuse_reply_entry(req, &*e);
    });
}

void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) noexcept {
    FsContext& ctx = ctx_of(req);
    ctx.table.forget(ctx.table.get(ino), nlookup);
    fuse_reply_none(req);
}

void forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) noexcept {
    FsContext& ctx = ctx_of(req);
    for (size_t i = 0; i < count; ++i) ctx.table.forget(ctx.table.get(forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
}

void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) noexcept {
    guarded(req, "mknod", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        std::lock_guard lock(ctx.ns_mu);
        if (auto r = sys::check(::mknodat(pfd->get(), name, mode, rdev)); !r) return (void)fuse_reply_err(req, r.error());
        finish_new_node(req, ctx, p, pfd->get(), name, ChangeKind::Mknod, nullptr);
    });
}

void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) noexcept {
    guarded(req, "mkdir", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        std::lock_guard lock(ctx.ns_mu);
        if (auto r = sys::check(::mkdirat(pfd->get(), name, mode)); !r) return (void)fuse_reply_err(req, r.error());
        finish_new_node(req, ctx, p, pfd->get(), name, ChangeKind::Mkdir, nullptr);
    });
}

void symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) noexcept {
    guarded(req, "symlink", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        std::lock_guard lock(ctx.ns_mu);
        if (auto r = sys::check(::symlinkat(link, pfd->get(), name)); !r) return (void)fuse_reply_err(req, r.error());
        finish_new_node(req, ctx, p, pfd->get(), name, ChangeKind::Symlink, link);
    });
}

void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) noexcept {
    guarded(req, "link", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        Inode& np = *ctx.table.get(newparent);
        auto fd = ctx.table.path_fd(node);
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        auto npfd = ctx.table.path_fd(np);
        if (!npfd) return (void)fuse_reply_err(req, npfd.error());
        std::lock_guard lock(ctx.ns_mu);
        const bool was_anonymous = ctx.table.is_anonymous(node);
        auto old_path = was_anonymous ? std::nullopt : ctx.table.path_of(node);
        if (auto r = sys::check(::linkat(fd->get(), "", npfd->get(), newname, AT_EMPTY_PATH)); !r) {
            return (void)fuse_reply_err(req, r.error());
        }
        auto st = sys::fstat(fd->get());
        if (!st) return (void)fuse_reply_err(req, st.error());
        auto new_path = ctx.table.child_path(np, newname);
        ChangeRecord rec;
        set_node_attrs(rec, *st);
        rec.path = new_path.value_or(newname);
        if (was_anonymous || !old_path) {
            // An O_TMPFILE (or unlinked) node got a name: to a mirror it is a new file.
            rec.kind = ChangeKind::Create;
            ctx.sink.on_change(rec);
            ChangeRecord data;
            data.kind = ChangeKind::Write;
            data.ino = rec.ino;
            data.path = rec.path;
            data.length = rec.size;
            if (data.length) ctx.sink.on_change(data);
            // Its xattrs (set while it had no name, so never recorded) go with it.
            if (auto xattrs = sys::read_xattrs(npfd->get(), newname)) {
                for (auto& [xname, xvalue] : *xattrs)
                    emit_setxattr(ctx, rec.ino, rec.path, std::move(xname), std::move(xvalue));
            }
        } else {
            rec.kind = ChangeKind::Link;
            rec.path2 = std::move(*old_path);
            ctx.sink.on_change(rec);
        }
        ctx.table.linked(node.id, &np, newname);
        auto inode = ctx.table.remember(&np, newname, *st, UniqueFd());
        if (!inode) return (void)fuse_reply_err(req, inode.error());
        fuse_entry_param e{};
        e.ino = ctx.table.id_of(*inode);
        e.attr = *st;
        e.attr_timeout = ctx.timeout;
        e.entry_timeout = ctx.timeout;
        fuse_reply_entry(req, &e);
    });
}

namespace {
void remove_name(fuse_req_t req, fuse_ino_t parent, const char* name, bool dir) {
    FsContext& ctx = ctx_of(req);
    Inode& p = *ctx.table.get(parent);
    auto pfd = ctx.table.path_fd(p);
    if (!pfd) return (void)fuse_reply_err(req, pfd.error());
    std::lock_guard lock(ctx.ns_mu);
    auto st = sys::fstatat(pfd->get(), name, AT_SYMLINK_NOFOLLOW);
    auto path = ctx.table.child_path(p, name);
    if (auto r = sys::check(::unlinkat(pfd->get(), name, dir ? AT_REMOVEDIR : 0)); !r) {
        return (void)fuse_reply_err(req, r.error());
    }
    ctx.ns_gen.fetch_add(1);  // before the table update (InodeTable::remember)
    ChangeRecord rec;
    rec.kind = dir ? ChangeKind::Rmdir : ChangeKind::Unlink;
    if (st) {
        set_node_attrs(rec, *st);
        rec.nlink = dir || st->st_nlink == 0 ? 0 : st->st_nlink - 1;
        ctx.table.name_removed(SrcId{st->st_ino, st->st_dev}, &p, name, rec.nlink);
    }
    rec.path = path.value_or(name);
    ctx.sink.on_change(rec);
    fuse_reply_err(req, 0);
}
}  // namespace

void unlink(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
    guarded(req, "unlink", [&] { remove_name(req, parent, name, false); });
}

void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
    guarded(req, "rmdir", [&] { remove_name(req, parent, name, true); });
}

void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
            unsigned flags) noexcept {
    guarded(req, "rename", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        Inode& np = *ctx.table.get(newparent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        auto npfd = ctx.table.path_fd(np);
        if (!npfd) return (void)fuse_reply_err(req, npfd.error());
        std::lock_guard lock(ctx.ns_mu);
        auto st_old = sys::fstatat(pfd->get(), name, AT_SYMLINK_NOFOLLOW);
        auto st_new = sys::fstatat(npfd->get(), newname, AT_SYMLINK_NOFOLLOW);
        auto old_path = ctx.table.child_path(p, name);
        auto new_path = ctx.table.child_path(np, newname);
        if (auto r = sys::check(::renameat2(pfd->get(), name, npfd->get(), newname, flags)); !r) {
            return (void)fuse_reply_err(req, r.error());
        }
        // Both names are links of one node: rename(2) does nothing, so neither does the
        // table, and no record is made. Replayed on a mirror where the two names were (still
        // or wrongly) different files, a Rename would delete the first name there.
        if (st_old && st_new && st_old->st_ino == st_new->st_ino && st_old->st_dev == st_new->st_dev) {
            return (void)fuse_reply_err(req, 0);
        }
        ctx.ns_gen.fetch_add(1);  // before the table update (InodeTable::remember)
        ChangeRecord rec;
        rec.kind = ChangeKind::Rename;
        rec.path = old_path.value_or(name);
        rec.path2 = new_path.value_or(newname);
        rec.flags = flags;
        if (st_old) {
            set_node_attrs(rec, *st_old);
            const SrcId moved{st_old->st_ino, st_old->st_dev};
            if (flags & RENAME_EXCHANGE) {
                if (st_new) ctx.table.renamed(SrcId{st_new->st_ino, st_new->st_dev}, &np, newname, &p, name);
            } else if (st_new) {
                std::uint64_t left = S_ISDIR(st_new->st_mode) || st_new->st_nlink == 0 ? 0 : st_new->st_nlink - 1;
                ctx.table.name_removed(SrcId{st_new->st_ino, st_new->st_dev}, &np, newname, left);
            }
            ctx.table.renamed(moved, &p, name, &np, newname);
        }
        ctx.sink.on_change(rec);
        fuse_reply_err(req, 0);
    });
}

}  // namespace sfs::fs::ops
