// Walks a directory subtree of SOURCE through fds (openat with O_NOFOLLOW, never a path
// string), so a symlink cannot lead the walk outside SOURCE and SOURCE may be shadowed by
// the mount itself.
//
// Order contract (the inotify backend depends on it): on_dir(dir) runs before dir is
// listed, so with a watch added in on_dir every entry is either listed or reported by the
// kernel afterwards (or both).
#pragma once

#include <functional>
#include <string>

#include "common/unique_fd.h"

namespace sfs::repl::watch {

struct TreeWalkCallbacks {
    // Called for each directory, `dir_fd` open O_RDONLY on it. Return false to skip
    // listing it (and its subtree).
    std::function<bool(const std::string& rel, int dir_fd)> on_dir;
    // Called for each entry found in a listed directory (not for `rel` itself). Return
    // false to not descend into a directory entry.
    std::function<bool(const std::string& rel, bool is_dir)> on_entry;
    // A directory that exists but cannot be opened or read (not ENOENT/ENOTDIR races).
    std::function<void(const std::string& rel, int err)> on_error;
};

// Opens directory `rel` below root_fd without following any symlink and without leaving
// root_fd (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS). Invalid (errno set) on failure.
UniqueFd open_dir_beneath(int root_fd, const std::string& rel) noexcept;

// Walks `rel` (a directory relative to root_fd; "" = root_fd itself) depth-first.
// Returns false when `rel` itself is no longer there (ENOENT/ENOTDIR/ELOOP: moved, removed
// or replaced since it was reported); errors go to on_error and return true.
bool walk_tree(int root_fd, const std::string& rel, const TreeWalkCallbacks& callbacks);

}  // namespace sfs::repl::watch
