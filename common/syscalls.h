// A thin layer over the syscalls syncfs uses in many places: every wrapper returns a
// SysResult (the value or the positive errno), so errno is read exactly once, at the OS
// edge, and callers never see a raw -1. fds come back owned by UniqueFd.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::sys {

// 0 or the errno of a call that returned -1.
inline SysResult<void> check(int rc) noexcept {
    if (rc == -1) return last_errno();
    return {};
}

// A byte count or the errno of a call that returned -1.
inline SysResult<std::size_t> check_size(ssize_t rc) noexcept {
    if (rc < 0) return last_errno();
    return static_cast<std::size_t>(rc);
}

SysResult<UniqueFd> openat(int dirfd, const char* path, int flags, mode_t mode = 0) noexcept;
SysResult<struct stat> fstatat(int dirfd, const char* path, int flags) noexcept;
SysResult<struct stat> fstat(int fd) noexcept;

// "/proc/self/fd/N": lets path-taking calls (chmod, truncate, utimensat, xattrs, open)
// act on the node an O_PATH fd refers to, which the f*() calls refuse.
class ProcFdPath {
public:
    explicit ProcFdPath(int fd) noexcept;
    const char* c_str() const noexcept { return buf_.data(); }

private:
    std::array<char, 32> buf_{};
};

// The path the kernel reports for an fd (readlink of /proc/self/fd/N).
SysResult<std::string> fd_path(int fd);

// An opaque file handle for the node `fd` refers to (name_to_handle_at with
// AT_EMPTY_PATH), stored as the bytes of a struct file_handle.
SysResult<std::string> file_handle(int fd) noexcept;

// Opens a handle made by file_handle(); `mount_fd` is any fd on the same filesystem.
SysResult<UniqueFd> open_by_handle(int mount_fd, const std::string& handle, int flags) noexcept;

}  // namespace sfs::sys
