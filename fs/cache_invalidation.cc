// Session::invalidate: drops the kernel's cache of a SOURCE path that changed outside the
// mount (docs/watcher.md, "Kernel cache of the mount"). Called by the replicator's watcher
// worker through a callback installed in fs/main.cc, never from a FUSE handler.
//
// Nodes are found by SOURCE's (st_dev, st_ino); a node the kernel never looked up has
// nothing cached. A name that is gone (deleted, renamed away) still gets its (parent, name)
// entry dropped, which is what makes the kernel look it up again.
//
// invalidate_subtree (events lost: a queue overflow, a watch limit, a dead watcher): no
// path is known, and FUSE has no subtree invalidation, so every node of the inode table at
// or below the subtree is invalidated (attributes, pages, its entry), and every name each
// known directory holds in SOURCE now gets its entry dropped -- that is what removes a
// negative entry cached for a name made while events were lost. The cost is bounded by the
// inode table (what the kernel holds) and those directories, one directory fd at a time;
// it comes with a subtree reconcile that costs far more.
#include <dirent.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "fs/context.h"
#include "common/unique_fd.h"
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

void Session::invalidate_subtree(const std::string& path) noexcept {
    std::lock_guard lock(notify_mu_);
    if (!can_notify_ || !se_) return;
    try {
        InodeTable& table = ctx_->table;
        const auto nodes = table.known_nodes(path);
        std::uint64_t nodes_done = 0, entries = 0;
        for (const auto& k : nodes) {
            if (fuse_lowlevel_notify_inval_inode(se_, k.id, 0, 0) == 0) ++nodes_done;
            for (const auto& [parent, name] : k.names) {
                if (fuse_lowlevel_notify_inval_entry(se_, parent, name.c_str(), name.size()) == 0) ++entries;
            }
        }
        for (const auto& k : nodes) {
            if (!k.is_dir || !k.path) continue;
            UniqueFd fd(::openat(table.root_fd(), k.path->empty() ? "." : k.path->c_str(),
                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!fd) continue;  // gone or replaced: its own entry was dropped above
            DIR* dir = ::fdopendir(fd.get());
            if (dir == nullptr) continue;
            (void)fd.release();
            while (const dirent* e = ::readdir(dir)) {
                const std::string_view name(e->d_name);
                if (name == "." || name == "..") continue;
                if (fuse_lowlevel_notify_inval_entry(se_, k.id, e->d_name, name.size()) == 0) ++entries;
            }
            ::closedir(dir);
        }
        spdlog::info("kernel cache: events for '{}' were lost: dropped {} cached nodes and {} entries of {} known",
                     path.empty() ? std::string("SOURCE") : path, nodes_done, entries, nodes.size());
    } catch (const std::exception& e) {
        // Allocation only: at least the root's attributes and readdir cache go.
        spdlog::error("kernel cache: cannot invalidate '{}' whole: {}", path, e.what());
        fuse_lowlevel_notify_inval_inode(se_, FUSE_ROOT_ID, 0, 0);
    }
}

}  // namespace sfs::fs
