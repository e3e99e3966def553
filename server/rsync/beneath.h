// Filesystem access confined to a module root.
//
// Every path the client names is module-relative and already sanitized (no "..", not
// absolute). Resolution still goes through openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
// so that a symlink planted inside the module (or raced in) cannot lead outside: an escape
// fails with EXDEV. The last component of a path is always handled through its parent
// directory fd with *at() calls that do not follow symlinks.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::server::rsync {

class ModuleRoot {
public:
    static Result<ModuleRoot> open(const std::string& path);

    int fd() const { return root_.get(); }
    const std::string& path() const { return path_; }

    // openat2 beneath the root ("." is the root itself).
    SysResult<UniqueFd> open_beneath(const std::string& rel, int flags, mode_t mode = 0) const;
    // The same without following any symlink at all (RESOLVE_NO_SYMLINKS: ELOOP), for files
    // the client names whose path the daemon's name-based rules must see as it is (merge
    // files: a link could otherwise lead to a name the daemon hides).
    SysResult<UniqueFd> open_strict(const std::string& rel, int flags) const;
    // The parent directory of `rel` (O_PATH|O_DIRECTORY) and the last component.
    SysResult<UniqueFd> open_parent(const std::string& rel, std::string& base) const;
    // lstat of `rel` (the last component is not followed).
    SysResult<struct stat> lstat(const std::string& rel) const;

private:
    UniqueFd root_;
    std::string path_;
};

// Helpers on a parent fd + name.
std::string parent_of(const std::string& rel);
std::string base_of(const std::string& rel);

}  // namespace sfs::server::rsync
