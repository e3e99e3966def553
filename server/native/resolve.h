// Confinement of every mirror-side path beneath the module root.
//
// A protocol path (already syntax-checked by protocol::native::validate_path) is split into
// its parent directory and final name. The parent is opened with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_MAGICLINKS), so neither "..", an absolute symlink nor a relative symlink that
// climbs out of the module can redirect it (the kernel answers EXDEV); a rename racing with
// the walk cannot escape either, the kernel checks the whole walk. The caller then acts on
// the final name with *at() calls that never follow a final symlink.
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::server::native {

// openat2(dirfd, path, flags, mode) with RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS. path "" means
// dirfd itself (".").
SysResult<UniqueFd> open_beneath(int dirfd, std::string_view path, int flags, unsigned mode = 0) noexcept;

struct ParentAndName {
    UniqueFd parent;   // O_PATH|O_DIRECTORY fd of the parent directory, beneath the root
    std::string name;  // final component; "." when the path is the module root itself
};

// Splits `path` and opens its parent beneath `root`.
SysResult<ParentAndName> resolve_parent(int root, std::string_view path) noexcept;

}  // namespace sfs::server::native
