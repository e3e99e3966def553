#include "common/syscalls.h"

#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>

namespace sfs::sys {

SysResult<UniqueFd> openat(int dirfd, const char* path, int flags, mode_t mode) noexcept {
    int fd = ::openat(dirfd, path, flags | O_CLOEXEC, mode);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

SysResult<struct stat> fstatat(int dirfd, const char* path, int flags) noexcept {
    struct stat st;
    if (::fstatat(dirfd, path, &st, flags) == -1) return last_errno();
    return st;
}

SysResult<struct stat> fstat(int fd) noexcept {
    struct stat st;
    if (::fstat(fd, &st) == -1) return last_errno();
    return st;
}

ProcFdPath::ProcFdPath(int fd) noexcept {
    std::snprintf(buf_.data(), buf_.size(), "/proc/self/fd/%d", fd);
}

SysResult<std::string> fd_path(int fd) {
    ProcFdPath link(fd);
    std::string out(PATH_MAX, '\0');
    ssize_t n = ::readlink(link.c_str(), out.data(), out.size());
    if (n < 0) return last_errno();
    out.resize(static_cast<std::size_t>(n));
    return out;
}

SysResult<std::string> file_handle(int fd) noexcept {
    alignas(struct file_handle) char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    auto* fh = reinterpret_cast<struct file_handle*>(buf);
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    if (::name_to_handle_at(fd, "", fh, &mount_id, AT_EMPTY_PATH) == -1) return last_errno();
    try {
        return std::string(buf, sizeof(struct file_handle) + fh->handle_bytes);
    } catch (const std::bad_alloc&) {
        return std::unexpected(ENOMEM);
    }
}

SysResult<UniqueFd> open_by_handle(int mount_fd, const std::string& handle, int flags) noexcept {
    alignas(struct file_handle) char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    if (handle.size() > sizeof(buf)) return std::unexpected(EINVAL);
    std::memcpy(buf, handle.data(), handle.size());
    int fd = ::open_by_handle_at(mount_fd, reinterpret_cast<struct file_handle*>(buf), flags | O_CLOEXEC);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

}  // namespace sfs::sys
