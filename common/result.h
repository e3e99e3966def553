// Result types used across syncfs.
//
// Two flavours, chosen by who consumes the error:
//  - SysResult<T>: the value or a positive errno. Used on the syscall layer and the FUSE
//    path, where the errno is exactly what the kernel must see and no allocation is allowed.
//  - Result<T>: the value or an Error with a human-readable message (naming the file, line
//    or peer involved). Used by config parsing, protocol sessions and tools.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace sfs {

template <class T>
using SysResult = std::expected<T, int>;

// The current errno as an unexpected SysResult.
inline std::unexpected<int> last_errno() noexcept { return std::unexpected<int>(errno); }

struct Error {
    std::string message;
    int code = 0;  // errno when the error came from the OS, else 0
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message, int code = 0) {
    return std::unexpected<Error>(Error{std::move(message), code});
}

}  // namespace sfs
