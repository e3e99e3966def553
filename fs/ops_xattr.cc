// Extended attributes (user., trusted., security., system.posix_acl_*), passed through by
// the /proc/self/fd path of the node's O_PATH fd (the f*xattr calls refuse O_PATH fds).
// Set/remove are namespace-ordered ops and emit records.
#include <sys/xattr.h>

#include <vector>

#include "common/syscalls.h"
#include "fs/op_helpers.h"
#include "fs/ops.h"

namespace sfs::fs::ops {

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) noexcept {
    guarded(req, "setxattr", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        auto fd = ctx.table.path_fd(node);
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        sys::ProcFdPath proc(fd->get());
        std::lock_guard lock(ctx.ns_mu);
        if (auto r = sys::check(::setxattr(proc.c_str(), name, value, size, flags)); !r) {
            return (void)fuse_reply_err(req, r.error());
        }
        if (auto path = ctx.table.path_of(node)) emit_setxattr(ctx, node.id.ino, std::move(*path), name, {value, size});
        fuse_reply_err(req, 0);
    });
}

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
    guarded(req, "getxattr", [&] {
        FsContext& ctx = ctx_of(req);
        auto fd = ctx.table.path_fd(*ctx.table.get(ino));
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        sys::ProcFdPath proc(fd->get());
        if (size == 0) {
            auto n = sys::check_size(::getxattr(proc.c_str(), name, nullptr, 0));
            if (!n) return (void)fuse_reply_err(req, n.error());
            return (void)fuse_reply_xattr(req, *n);
        }
        std::vector<char> buf(size);
        auto n = sys::check_size(::getxattr(proc.c_str(), name, buf.data(), size));
        if (!n) return (void)fuse_reply_err(req, n.error());
        fuse_reply_buf(req, buf.data(), *n);
    });
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
    guarded(req, "listxattr", [&] {
        FsContext& ctx = ctx_of(req);
        auto fd = ctx.table.path_fd(*ctx.table.get(ino));
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        sys::ProcFdPath proc(fd->get());
        if (size == 0) {
            auto n = sys::check_size(::listxattr(proc.c_str(), nullptr, 0));
            if (!n) return (void)fuse_reply_err(req, n.error());
            return (void)fuse_reply_xattr(req, *n);
        }
        std::vector<char> buf(size);
        auto n = sys::check_size(::listxattr(proc.c_str(), buf.data(), size));
        if (!n) return (void)fuse_reply_err(req, n.error());
        fuse_reply_buf(req, buf.data(), *n);
    });
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) noexcept {
    guarded(req, "removexattr", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        auto fd = ctx.table.path_fd(node);
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        sys::ProcFdPath proc(fd->get());
        std::lock_guard lock(ctx.ns_mu);
        if (auto r = sys::check(::removexattr(proc.c_str(), name)); !r) return (void)fuse_reply_err(req, r.error());
        if (auto path = ctx.table.path_of(node)) {
            ChangeRecord rec;
            rec.kind = ChangeKind::Removexattr;
            rec.ino = node.id.ino;
            rec.path = std::move(*path);
            rec.xattr_name = name;
            ctx.sink.on_change(rec);
        }
        fuse_reply_err(req, 0);
    });
}

}  // namespace sfs::fs::ops
