#include "server/native/resolve.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sfs::server::native {

SysResult<UniqueFd> open_beneath(int dirfd, std::string_view path, int flags, unsigned mode) noexcept {
    std::string p = path.empty() ? std::string(".") : std::string(path);
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd;
    int attempts = 0;
    do {
        fd = ::syscall(SYS_openat2, dirfd, p.c_str(), &how, sizeof how);
        // EAGAIN: a concurrent rename somewhere on the system made the kernel unsure the walk
        // stayed beneath; retrying is what openat2(2) recommends. Bounded so it cannot spin.
    } while (fd < 0 && (errno == EINTR || errno == EAGAIN) && ++attempts < 64);
    if (fd < 0) return last_errno();
    return UniqueFd(static_cast<int>(fd));
}

SysResult<ParentAndName> resolve_parent(int root, std::string_view path) noexcept {
    ParentAndName out;
    std::string_view parent;
    if (path.empty()) {
        out.name = ".";
    } else if (auto slash = path.rfind('/'); slash == std::string_view::npos) {
        out.name = std::string(path);
    } else {
        parent = path.substr(0, slash);
        out.name = std::string(path.substr(slash + 1));
    }
    auto fd = open_beneath(root, parent, O_PATH | O_DIRECTORY);
    if (!fd) return std::unexpected(fd.error());
    out.parent = std::move(*fd);
    return out;
}

}  // namespace sfs::server::native
