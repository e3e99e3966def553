// init and the op table: nothing else lives here.
#include "fs/ops.h"

#include <spdlog/spdlog.h>

#include "fs/context.h"

namespace sfs::fs {
namespace {

void init(void* userdata, fuse_conn_info* conn) noexcept {
    auto& ctx = *static_cast<FsContext*>(userdata);
    auto want = [conn](unsigned cap) {
        if (conn->capable & cap) conn->want |= cap;
    };
    // Replies with file data (READ) are spliced from SOURCE's page cache into /dev/fuse.
    // Requests are read() instead of spliced: a splice read costs every request, metadata
    // included, a second syscall (splice, then read of the pipe) and saves one memcpy only
    // for WRITE data.
    want(FUSE_CAP_SPLICE_WRITE);
    want(FUSE_CAP_SPLICE_MOVE);
    conn->want &= ~FUSE_CAP_SPLICE_READ;
    want(FUSE_CAP_PARALLEL_DIROPS);
    want(FUSE_CAP_ASYNC_DIO);
    want(FUSE_CAP_READDIRPLUS);
    want(FUSE_CAP_READDIRPLUS_AUTO);
    want(FUSE_CAP_CACHE_SYMLINKS);
    // Set-ID bits: FUSE_HANDLE_KILLPRIV (v1, which libfuse asks for by default) would make
    // the kernel leave clearing them on write to the server without telling it when; v2 is
    // asked for by the INIT reply patch in fs/request_io.cc and tells the server per
    // request. Without v2 (older kernels) the kernel clears them itself with a SETATTR.
    // docs/fs.md, "Set-ID bits on write and truncate".
    conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
    ctx.want_killpriv_v2 = true;
    ctx.timeout = ctx.options.timeout;
    // The writeback cache assumes SOURCE changes only through the mount between attr
    // refreshes; it is what makes small writes cheap.
    if (ctx.options.writeback && ctx.timeout > 0 && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
        conn->want |= FUSE_CAP_WRITEBACK_CACHE;
        ctx.writeback = true;
    } else {
        conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
        ctx.writeback = false;
    }
    // POSIX ACLs are enforced by the kernel only together with default_permissions.
    if (ctx.options.default_permissions) want(FUSE_CAP_POSIX_ACL);
    // Just under 1 MiB: libfuse splices a reply only when its pipe holds the reply plus
    // three pages, and an unprivileged pipe (no CAP_SYS_RESOURCE, e.g. in a container) is
    // capped at pipe-max-size, 1 MiB. With max_write = 1 MiB every READ fell back to
    // malloc (a fresh mmap of 1 MiB) + pread + writev, two copies and 256 page faults per
    // request. max_pages follows max_write, so READ requests are at most this big too.
    conn->max_write = kMaxRequestBytes;
    conn->max_readahead = kReadaheadBytes;
    conn->time_gran = 1;
    spdlog::debug("init: want=0x{:x} writeback={} timeout={} killpriv_v2 offered={}", conn->want, ctx.writeback,
                  ctx.timeout, ctx.init_unique.load() != 0);
}

fuse_lowlevel_ops make_ops() noexcept {
    fuse_lowlevel_ops o{};
    o.init = init;
    o.lookup = ops::lookup;
    o.forget = ops::forget;
    o.forget_multi = ops::forget_multi;
    o.getattr = ops::getattr;
    o.setattr = ops::setattr;
    o.readlink = ops::readlink;
    o.mknod = ops::mknod;
    o.mkdir = ops::mkdir;
    o.symlink = ops::symlink;
    o.link = ops::link;
    o.unlink = ops::unlink;
    o.rmdir = ops::rmdir;
    o.rename = ops::rename;
    o.open = ops::open;
    o.create = ops::create;
    o.read = ops::read;
    o.write_buf = ops::write_buf;
    // No flush: libfuse answers FLUSH with ENOSYS once and the kernel stops sending it
    // (docs/fs.md, "close(2) and FLUSH"). With the writeback cache the kernel writes dirty
    // pages back (WRITE requests, waited for) before it would send FLUSH, so close(2)
    // still reports write-back errors.
    o.release = ops::release;
    o.fsync = ops::fsync;
    o.opendir = ops::opendir;
    o.readdir = ops::readdir;
    o.readdirplus = ops::readdirplus;
    o.releasedir = ops::releasedir;
    o.fsyncdir = ops::fsyncdir;
    o.statfs = ops::statfs;
    o.setxattr = ops::setxattr;
    o.getxattr = ops::getxattr;
    o.listxattr = ops::listxattr;
    o.removexattr = ops::removexattr;
    o.access = ops::access;
    o.fallocate = ops::fallocate;
    o.copy_file_range = ops::copy_file_range;
    o.lseek = ops::lseek;
    return o;
}

}  // namespace

const fuse_lowlevel_ops& lowlevel_ops() noexcept {
    static const fuse_lowlevel_ops table = make_ops();
    return table;
}

}  // namespace sfs::fs
