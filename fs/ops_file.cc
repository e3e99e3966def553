// File data ops. fi->fh is the backing fd (opened read-write when the kernel's writeback
// cache may read pages of a write-only file; O_APPEND dropped because with writeback the
// kernel sends absolute offsets). Data goes through fuse_buf_copy / fuse_reply_data so
// libfuse can splice between /dev/fuse and the backing file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/syscalls.h"
#include "fs/op_helpers.h"
#include "fs/ops.h"
#include "fs/request_io.h"

namespace sfs::fs::ops {
namespace {

int backing_flags(const FsContext& ctx, int flags) noexcept {
    if (ctx.writeback) {
        if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
        flags &= ~O_APPEND;
    }
    if (ctx.options.noatime) flags |= O_NOATIME;
    return flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL);
}

// fi->fh holds the backing fd, and kDirectBit when it was opened O_DIRECT.
constexpr uint64_t kDirectBit = 1ull << 62;
int fd_of(const fuse_file_info* fi) noexcept { return static_cast<int>(fi->fh & ~kDirectBit); }
bool is_direct(const fuse_file_info* fi) noexcept { return fi->fh & kDirectBit; }

void set_open_reply(const FsContext& ctx, fuse_file_info* fi, int fd, int flags) noexcept {
    fi->fh = static_cast<uint64_t>(fd) | ((flags & O_DIRECT) ? kDirectBit : 0);
    // Page cache survives open(): SOURCE changes behind our back are caught by the attr
    // check (auto_inval_data) and by the watcher's invalidation.
    fi->keep_cache = ctx.timeout > 0;
}

void invalidate_attrs(FsContext& ctx, fuse_ino_t ino) noexcept {
    if (ctx.se) fuse_lowlevel_notify_inval_inode(ctx.se, ino, -1, 0);
}

// Records what open(O_TRUNC) did; `extra` adds kAttrMode when it also cleared set-ID bits.
void emit_truncate(FsContext& ctx, Inode& node, int fd, std::uint32_t extra = 0) {
    auto st = sys::fstat(fd);
    if (!st) return;
    auto path = ctx.table.path_of(node);
    if (!path) return;
    ChangeRecord rec;
    rec.kind = ChangeKind::Setattr;
    set_node_attrs(rec, *st);
    rec.attr_mask = kAttrSize | kAttrMtime | extra;
    rec.path = std::move(*path);
    ctx.sink.on_change(rec);
}

// An OPEN or CREATE with O_TRUNC whose caller lacks CAP_FSETID (the kernel's kill flag,
// FUSE_HANDLE_KILLPRIV_V2) clears set-ID bits as a native truncating open does. Returns
// kAttrMode when the mode changed (for the truncate record), else 0. Caller holds ns_mu.
std::uint32_t kill_setid_on_trunc(fuse_req_t req, int fd) noexcept {
    if (!request_kills_suidgid()) return 0;
    auto r = clear_setid_bits(req, fd);
    if (!r) {
        spdlog::warn("open O_TRUNC: cannot clear set-ID bits of {}: {}", sys::fd_path(fd).value_or("?"),
                     std::strerror(r.error()));
        return 0;
    }
    return r->second ? static_cast<std::uint32_t>(kAttrMode) : 0u;
}

// A WRITE whose caller lacks CAP_FSETID (kill flag): clear set-ID bits, record the mode,
// and drop the kernel's cached attributes (a WRITE reply carries none, and the kernel
// would show the old mode until its attribute timeout). Also the path of a writeback-
// disabled mount and of O_DIRECT writes.
void kill_setid_on_write(fuse_req_t req, FsContext& ctx, fuse_ino_t ino, int fd) noexcept {
    if (!request_kills_suidgid()) return;
    bool changed = false;
    try {
        std::lock_guard lock(ctx.ns_mu);
        auto r = clear_setid_bits(req, fd);
        if (!r) {
            spdlog::warn("write: cannot clear set-ID bits of {}: {}", sys::fd_path(fd).value_or("?"),
                         std::strerror(r.error()));
            return;
        }
        changed = r->second;
        if (!changed) return;
        Inode& node = *ctx.table.get(ino);
        if (auto path = ctx.table.path_of(node)) {
            ChangeRecord rec;
            rec.kind = ChangeKind::Setattr;
            set_node_attrs(rec, r->first);
            rec.attr_mask = kAttrMode;
            rec.path = std::move(*path);
            ctx.sink.on_change(rec);
        }
    } catch (const std::exception& e) {
        spdlog::error("write: clearing set-ID bits: {}", e.what());
    }
    if (changed) invalidate_attrs(ctx, ino);
}

// open(dir, O_TMPFILE), arriving as a CREATE (fs/request_io.h) with the name "/": an
// unnamed file in `parent` on SOURCE, given to the caller like a created one. No record:
// nothing a mirror could replay exists until it is linked in, and then `link` records
// Create + Write[0,size) (ops_namespace.cc). The node pins its O_PATH fd until then
// (InodeTable::remember_anonymous). O_EXCL is not passed to SOURCE: the kernel itself keeps
// such a file unlinkable (it never sends LINK for it), and SOURCE's file must stay
// linkable for the files that may be linked.
void create_tmpfile(fuse_req_t req, FsContext& ctx, Inode& parent, int parent_fd, mode_t mode, fuse_file_info* fi) {
    const int flags = backing_flags(ctx, fi->flags);
    auto fd = sys::openat(parent_fd, ".", flags, mode);
    if (!fd) return (void)fuse_reply_err(req, fd.error());
    auto st = sys::fstat(fd->get());
    if (!st) return (void)fuse_reply_err(req, st.error());
    if (auto r = give_to_caller(req, parent_fd, fd->get(), *st); !r) {
        spdlog::warn("O_TMPFILE in {}: cannot give new file to uid {}: {}", ctx.table.path_of(parent).value_or("?"),
                     fuse_req_ctx(req)->uid, std::strerror(r.error()));
    }
    auto path_fd = sys::openat(AT_FDCWD, sys::ProcFdPath(fd->get()).c_str(), O_PATH);
    if (!path_fd) return (void)fuse_reply_err(req, path_fd.error());
    auto inode = ctx.table.remember_anonymous(*st, std::move(*path_fd));
    if (!inode) return (void)fuse_reply_err(req, inode.error());
    if (auto r = ctx.table.begin_open(**inode); !r) {
        ctx.table.forget(*inode, 1);
        return (void)fuse_reply_err(req, r.error());
    }
    fuse_entry_param e{};
    e.ino = ctx.table.id_of(*inode);
    e.attr = *st;
    e.attr_timeout = ctx.timeout;
    e.entry_timeout = 0;  // the kernel's dentry "/" is never looked up
    set_open_reply(ctx, fi, fd->release(), flags);
    if (fuse_reply_create(req, &e, fi) != 0) {
        // Interrupted: the kernel never learnt the node, so no RELEASE or FORGET will come.
        ::close(fd_of(fi));
        ctx.table.end_open(**inode);
        ctx.table.forget(*inode, 1);
    }
}

}  // namespace

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
    guarded(req, "open", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        auto pfd = ctx.table.path_fd(node);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        if (auto r = ctx.table.begin_open(node); !r) return (void)fuse_reply_err(req, r.error());
        const int flags = backing_flags(ctx, fi->flags);
        sys::ProcFdPath proc(pfd->get());
        if (flags & O_TRUNC) {
            std::lock_guard lock(ctx.ns_mu);
            auto fd = sys::openat(AT_FDCWD, proc.c_str(), flags);
            if (!fd) {
                ctx.table.end_open(node);
                return (void)fuse_reply_err(req, fd.error());
            }
            const std::uint32_t killed = kill_setid_on_trunc(req, fd->get());
            emit_truncate(ctx, node, fd->get(), killed);
            // An OPEN reply carries no attributes: the kernel's cached mode is stale.
            if (killed) invalidate_attrs(ctx, ino);
            set_open_reply(ctx, fi, fd->release(), flags);
        } else {
            auto fd = sys::openat(AT_FDCWD, proc.c_str(), flags);
            if (!fd) {
                ctx.table.end_open(node);
                return (void)fuse_reply_err(req, fd.error());
            }
            set_open_reply(ctx, fi, fd->release(), flags);
        }
        if (fuse_reply_open(req, fi) != 0) {
            ::close(fd_of(fi));  // request interrupted: no release will come
            ctx.table.end_open(node);
        }
    });
}

void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) noexcept {
    guarded(req, "create", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& p = *ctx.table.get(parent);
        auto pfd = ctx.table.path_fd(p);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        if ((fi->flags & O_TMPFILE) == O_TMPFILE) return create_tmpfile(req, ctx, p, pfd->get(), mode, fi);
        const int flags = backing_flags(ctx, fi->flags);
        std::lock_guard lock(ctx.ns_mu);
        bool created = true;
        auto fd = sys::openat(pfd->get(), name, flags | O_CREAT | O_EXCL, mode);
        if (!fd && fd.error() == EEXIST && !(fi->flags & O_EXCL)) {
            // The kernel's negative entry was stale: open the existing file.
            created = false;
            fd = sys::openat(pfd->get(), name, flags, 0);
        }
        if (!fd) return (void)fuse_reply_err(req, fd.error());
        // The CREATE reply's attributes are taken after this, so the kernel sees the mode.
        const std::uint32_t killed = (!created && (flags & O_TRUNC)) ? kill_setid_on_trunc(req, fd->get()) : 0;
        auto st = sys::fstat(fd->get());
        if (!st) return (void)fuse_reply_err(req, st.error());
        if (created) {
            if (auto r = give_to_caller(req, pfd->get(), fd->get(), *st); !r) {
                spdlog::warn("{}: cannot give new file to uid {}: {}", name, fuse_req_ctx(req)->uid,
                             std::strerror(r.error()));
            }
        }
        auto path_fd = sys::openat(pfd->get(), name, O_PATH | O_NOFOLLOW);
        auto inode = ctx.table.remember(&p, name, *st, path_fd ? std::move(*path_fd) : UniqueFd());
        if (!inode) return (void)fuse_reply_err(req, inode.error());
        if (created) {
            ChangeRecord rec;
            rec.kind = ChangeKind::Create;
            set_node_attrs(rec, *st);
            if (auto path = ctx.table.path_of(**inode)) rec.path = std::move(*path);
            ctx.sink.on_change(rec);
        } else if (flags & O_TRUNC) {
            emit_truncate(ctx, **inode, fd->get(), killed);
        }
        fuse_entry_param e{};
        e.ino = ctx.table.id_of(*inode);
        e.attr = *st;
        e.attr_timeout = ctx.timeout;
        e.entry_timeout = ctx.timeout;
        if (auto r = ctx.table.begin_open(**inode); !r) {
            ctx.table.forget(*inode, 1);
            return (void)fuse_reply_err(req, r.error());
        }
        set_open_reply(ctx, fi, fd->release(), flags);
        if (fuse_reply_create(req, &e, fi) != 0) {
            // Interrupted: the kernel never learnt the node (no RELEASE, no FORGET), so its
            // lookup is dropped here or the Inode would stay for the mount's lifetime.
            ::close(fd_of(fi));
            ctx.table.end_open(**inode);
            ctx.table.forget(*inode, 1);
        }
    });
}

void read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) noexcept {
    fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd_of(fi);
    buf.buf[0].pos = off;
    fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

namespace {
// O_DIRECT needs page-aligned memory; the request's data sits after its header (in memory
// or in a pipe), so it is copied into an aligned buffer first. Misaligned offsets or
// lengths still fail with the backing filesystem's EINVAL, as natively.
void write_direct(fuse_req_t req, FsContext& ctx, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
    const size_t size = fuse_buf_size(in);
    void* mem = nullptr;
    if (::posix_memalign(&mem, 4096, size ? size : 1) != 0) return (void)fuse_reply_err(req, ENOMEM);
    std::unique_ptr<void, decltype(&std::free)> owner(mem, &std::free);
    fuse_bufvec aligned = FUSE_BUFVEC_INIT(size);
    aligned.buf[0].mem = mem;
    ssize_t n = fuse_buf_copy(&aligned, in, static_cast<fuse_buf_copy_flags>(0));
    if (n < 0) return (void)fuse_reply_err(req, static_cast<int>(-n));
    ssize_t res = ::pwrite(fd_of(fi), mem, static_cast<size_t>(n), off);
    if (res < 0) return (void)fuse_reply_err(req, errno);
    if (res > 0) emit_write(ctx, *ctx.table.get(ino), static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(res));
    kill_setid_on_write(req, ctx, ino, fd_of(fi));
    fuse_reply_write(req, static_cast<size_t>(res));
}
}  // namespace

void write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) noexcept {
    FsContext& ctx = ctx_of(req);
    if (is_direct(fi)) return write_direct(req, ctx, ino, in, off, fi);
    fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
    out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    out.buf[0].fd = fd_of(fi);
    out.buf[0].pos = off;
    ssize_t res = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
    if (res < 0) return (void)fuse_reply_err(req, static_cast<int>(-res));
    if (res > 0) emit_write(ctx, *ctx.table.get(ino), static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(res));
    kill_setid_on_write(req, ctx, ino, fd_of(fi));
    fuse_reply_write(req, static_cast<size_t>(res));
}

void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
    FsContext& ctx = ctx_of(req);
    ::close(fd_of(fi));
    ctx.table.end_open(*ctx.table.get(ino));
    fuse_reply_err(req, 0);
}

void fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) noexcept {
    guarded(req, "fsync", [&] {
        FsContext& ctx = ctx_of(req);
        int fd = fd_of(fi);
        if (auto r = sys::check(datasync ? ::fdatasync(fd) : ::fsync(fd)); !r) return (void)fuse_reply_err(req, r.error());
        // Written-back data changed st_blocks: drop the kernel's cached attributes.
        invalidate_attrs(ctx, ino);
        if (ctx.options.sync) {
            Inode& node = *ctx.table.get(ino);
            auto path = ctx.table.path_of(node);
            int err = ctx.sink.wait_durable(node.id.ino, path.value_or(std::string()));
            return (void)fuse_reply_err(req, err);
        }
        fuse_reply_err(req, 0);
    });
}

void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info* fi) noexcept {
    FsContext& ctx = ctx_of(req);
    int fd = fd_of(fi);
    if (::fallocate(fd, mode, offset, length) == -1) return (void)fuse_reply_err(req, errno);
    // Preallocation beyond EOF without a size change changes no byte a reader sees.
    if (mode != FALLOC_FL_KEEP_SIZE) {
        std::uint64_t len = static_cast<std::uint64_t>(length);
        if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
            // Everything from offset to the (old or new) end of file moved.
            struct stat st;
            if (::fstat(fd, &st) == 0) len = static_cast<std::uint64_t>(st.st_size - offset) + len;
        }
        emit_write(ctx, *ctx.table.get(ino), static_cast<std::uint64_t>(offset), len);
    }
    invalidate_attrs(ctx, ino);
    fuse_reply_err(req, 0);
}

void copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t ino_out,
                     off_t off_out, fuse_file_info* fi_out, size_t len, int flags) noexcept {
    FsContext& ctx = ctx_of(req);
    loff_t in = off_in;
    loff_t out = off_out;
    ssize_t res = ::copy_file_range(fd_of(fi_in), &in, fd_of(fi_out), &out, len,
                                    static_cast<unsigned>(flags));
    if (res < 0) return (void)fuse_reply_err(req, errno);
    if (res > 0) {
        emit_write(ctx, *ctx.table.get(ino_out), static_cast<std::uint64_t>(off_out), static_cast<std::uint64_t>(res));
    }
    fuse_reply_write(req, static_cast<size_t>(res));
}

void lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) noexcept {
    off_t res = ::lseek(fd_of(fi), off, whence);
    if (res == -1) return (void)fuse_reply_err(req, errno);
    fuse_reply_lseek(req, res);
}

}  // namespace sfs::fs::ops
