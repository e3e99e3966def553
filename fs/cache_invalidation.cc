// Session::invalidate: drops the kernel's cache of a SOURCE path that changed outside the
// mount (docs/watcher.md, "Kernel cache of the mount"). Called by the replicator's watcher
// worker through a callback installed in fs/main.cc, never from a FUSE handler.
//
// Nodes are found by SOURCE's (st_dev, st_ino); a node the kernel never looked up has
// nothing cached. A name that is gone (deleted, renamed away) still gets its (parent, name)
// entry dropped, which is what makes the kernel look it up again.
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "fs/context.h"
#include "fs/session.h"

namespace sfs::fs {

void Session::invalidate(const std::string& path) noexcept {
    std::lock_guard lock(notify_mu_);
    if (!can_notify_ || !se_) return;
    InodeTable& table = ctx_->table;
    const int root = table.root_fd();
    auto note = [&](int rc, const char* what) {
        // ENOENT: the kernel had dropped it already; anything else is worth a debug line.
        if (rc != 0 && rc != -ENOENT) spdlog::debug("invalidate '{}': {}: {}", path, what, std::strerror(-rc));
    };
    struct stat st;
    if (::fstatat(root, path.empty() ? "." : path.c_str(), &st, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) == 0) {
        if (fuse_ino_t ino = table.known_id(st); ino != 0) note(fuse_lowlevel_notify_inval_inode(se_, ino, 0, 0), "inode");
    }
    if (path.empty()) return;
    const auto slash = path.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : path.substr(0, slash);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (::fstatat(root, parent.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
    const fuse_ino_t pino = table.known_id(st);
    if (pino == 0) return;
    note(fuse_lowlevel_notify_inval_entry(se_, pino, name.c_str(), name.size()), "entry");
    note(fuse_lowlevel_notify_inval_inode(se_, pino, 0, 0), "parent");
}

}  // namespace sfs::fs
