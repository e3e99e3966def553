#include "replicator/watch/tree_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"
#include "replicator/watch/paths.h"

namespace sfs::repl::watch {
namespace {

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// Races with a concurrent delete/rename/replace-by-symlink: the kernel reports those.
bool benign(int err) { return err == ENOENT || err == ENOTDIR || err == ELOOP || err == EXDEV; }

// Walks the directory open as `fd` (owned). Recursion depth = tree depth; each level
// holds one fd only while it is being listed.
void walk_dir(UniqueFd fd, const std::string& rel, const TreeWalkCallbacks& cb) {
    if (cb.on_dir && !cb.on_dir(rel, fd.get())) return;
    int list_fd = ::dup(fd.get());
    DIR* dir = list_fd >= 0 ? ::fdopendir(list_fd) : nullptr;
    if (dir == nullptr) {
        int err = errno;
        if (list_fd >= 0) ::close(list_fd);
        if (cb.on_error) cb.on_error(rel, err);
        return;
    }
    std::vector<std::string> subdirs;
    errno = 0;
    while (dirent* de = ::readdir(dir)) {
        if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
        bool is_dir = de->d_type == DT_DIR;
        if (de->d_type == DT_UNKNOWN) {
            struct stat st{};
            if (::fstatat(fd.get(), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            is_dir = S_ISDIR(st.st_mode);
        }
        std::string child = join_path(rel, de->d_name);
        bool descend = cb.on_entry ? cb.on_entry(child, is_dir) : true;
        if (is_dir && descend) subdirs.push_back(de->d_name);
    }
    int read_err = errno;
    ::closedir(dir);
    if (read_err != 0 && cb.on_error) cb.on_error(rel, read_err);
    for (const auto& name : subdirs) {
        UniqueFd sub(::openat(fd.get(), name.c_str(), kDirFlags));
        std::string child = join_path(rel, name);
        if (!sub) {
            if (!benign(errno) && cb.on_error) cb.on_error(child, errno);
            continue;
        }
        walk_dir(std::move(sub), child, cb);
    }
}

}  // namespace

UniqueFd open_dir_beneath(int root_fd, const std::string& rel) noexcept {
    if (rel.empty()) return UniqueFd(::openat(root_fd, ".", kDirFlags));
    open_how how{};
    how.flags = kDirFlags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how)));
}

bool walk_tree(int root_fd, const std::string& rel, const TreeWalkCallbacks& callbacks) {
    UniqueFd fd = open_dir_beneath(root_fd, rel);
    if (!fd) {
        if (benign(errno)) return false;
        if (callbacks.on_error) callbacks.on_error(rel, errno);
        return true;
    }
    walk_dir(std::move(fd), rel, callbacks);
    return true;
}

}  // namespace sfs::repl::watch
