// See request_io.h. The request and reply layouts are the kernel's (<linux/fuse.h>, the
// ABI libfuse speaks on /dev/fuse); only fixed-size headers are read, each after checking
// that the kernel's message is long enough to hold it.
#include "fs/request_io.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "fs/context.h"

namespace sfs::fs {
namespace {

// The "clear set-ID bits" flag of the request this thread read last. libfuse's workers
// (and its single-threaded loop) read a request and process it on the same thread before
// reading the next one, and libfuse 3.14 has no per-request slot a custom reader could
// fill, so this is the one place that knows it. Never read outside a handler.
thread_local bool t_kill_suidgid = false;

template <class T>
bool read_arg(const char* arg, std::size_t len, T& out) noexcept {
    if (len < sizeof(T)) return false;
    std::memcpy(&out, arg, sizeof(T));
    return true;
}

// Notes what libfuse will not pass on: the kill flags, and the INIT request (its unique id,
// so that the reply can be found) when the kernel offers FUSE_HANDLE_KILLPRIV_V2.
void inspect_request(FsContext& ctx, const char* buf, std::size_t len) noexcept {
    t_kill_suidgid = false;
    fuse_in_header in;
    if (!read_arg(buf, len, in)) return;
    const char* arg = buf + sizeof(in);
    const std::size_t arg_len = len - sizeof(in);
    switch (in.opcode) {
    case FUSE_WRITE: {
        fuse_write_in w;
        if (read_arg(arg, arg_len, w)) t_kill_suidgid = (w.write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
        break;
    }
    case FUSE_OPEN: {
        fuse_open_in o;
        if (read_arg(arg, arg_len, o)) t_kill_suidgid = (o.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
        break;
    }
    case FUSE_CREATE: {
        fuse_create_in c;
        if (read_arg(arg, arg_len, c)) t_kill_suidgid = (c.open_flags & FUSE_OPEN_KILL_SUIDGID) != 0;
        break;
    }
    case FUSE_INIT: {
        // Only the first four fields are common to every protocol minor; they are enough.
        struct {
            std::uint32_t major, minor, max_readahead, flags;
        } init;
        if (read_arg(arg, arg_len, init) && init.major == 7 && (init.flags & FUSE_HANDLE_KILLPRIV_V2)) {
            ctx.init_unique.store(in.unique, std::memory_order_release);
        }
        break;
    }
    default:
        break;
    }
}

// Adds FUSE_HANDLE_KILLPRIV_V2 to the successful reply of the INIT request noted above,
// when init() asked for it. libfuse builds that reply as [fuse_out_header, fuse_init_out].
void patch_init_reply(FsContext& ctx, struct iovec* iov, int count) noexcept {
    const std::uint64_t init_unique = ctx.init_unique.load(std::memory_order_acquire);
    if (init_unique == 0 || count < 2 || iov[0].iov_len < sizeof(fuse_out_header)) return;
    fuse_out_header out;
    std::memcpy(&out, iov[0].iov_base, sizeof(out));
    if (out.unique != init_unique) return;
    ctx.init_unique.store(0, std::memory_order_release);
    constexpr std::size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(std::uint32_t);
    if (out.error != 0 || !ctx.want_killpriv_v2 || iov[1].iov_len < kFlagsEnd) return;
    char* reply = static_cast<char*>(iov[1].iov_base);
    std::uint32_t flags;
    std::memcpy(&flags, reply + offsetof(fuse_init_out, flags), sizeof(flags));
    flags |= FUSE_HANDLE_KILLPRIV_V2;
    std::memcpy(reply + offsetof(fuse_init_out, flags), &flags, sizeof(flags));
    ctx.killpriv_v2.store(true, std::memory_order_release);
}

// FUSE_TMPFILE becomes FUSE_CREATE (see request_io.h): same request and reply layout, and
// the open flags (O_TMPFILE) still say what it is. Other requests are left alone.
void route_tmpfile(char* buf, std::size_t len) noexcept {
    fuse_in_header in;
    if (!read_arg(buf, len, in) || in.opcode != FUSE_TMPFILE) return;
    const std::uint32_t create = FUSE_CREATE;
    std::memcpy(buf + offsetof(fuse_in_header, opcode), &create, sizeof(create));
}

ssize_t io_read(int fd, void* buf, size_t len, void* userdata) {
    const ssize_t n = ::read(fd, buf, len);
    if (n > 0) {
        route_tmpfile(static_cast<char*>(buf), static_cast<std::size_t>(n));
        inspect_request(*static_cast<FsContext*>(userdata), static_cast<const char*>(buf), static_cast<std::size_t>(n));
    }
    return n;
}

ssize_t io_writev(int fd, struct iovec* iov, int count, void* userdata) {
    patch_init_reply(*static_cast<FsContext*>(userdata), iov, count);
    return ::writev(fd, iov, count);
}

ssize_t io_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len, unsigned int flags, void*) {
    static_assert(sizeof(off_t) == sizeof(loff_t));
    return ::splice(fdin, reinterpret_cast<loff_t*>(offin), fdout, reinterpret_cast<loff_t*>(offout), len, flags);
}

}  // namespace

Result<void> install_request_io(fuse_session* se) {
    fuse_custom_io io{};
    io.read = io_read;
    io.writev = io_writev;
    io.splice_send = io_splice_send;
    // splice_receive stays null: requests are read(), never spliced (fs/ops.cc, init).
    if (int rc = fuse_session_custom_io(se, &io, fuse_session_fd(se)); rc != 0) {
        return fail(std::string("cannot install the FUSE device I/O: ") + std::strerror(-rc), -rc);
    }
    return {};
}

bool request_kills_suidgid() noexcept { return t_kill_suidgid; }

}  // namespace sfs::fs
