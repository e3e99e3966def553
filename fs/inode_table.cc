#include "fs/inode_table.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/syscalls.h"

namespace sfs::fs {
namespace {
// fds kept free of the cache for /dev/fuse, stdio, logs, sockets of other parts.
constexpr std::size_t kReserve = 48;
constexpr std::size_t kMinCache = 16;
// Names remembered per node: a file with more hard links keeps the most recent ones (a
// forgotten name is learned again by the next lookup through it).
constexpr std::size_t kMaxNames = 8;
// Bound of the walk to the root (a cycle would mean a bookkeeping bug; never loop on it).
constexpr std::size_t kMaxDepth = 4096;
}  // namespace

PathFd::PathFd(PathFd&& o) noexcept
    : table_(std::exchange(o.table_, nullptr)), inode_(std::exchange(o.inode_, nullptr)),
      fd_(std::exchange(o.fd_, -1)) {}

PathFd& PathFd::operator=(PathFd&& o) noexcept {
    if (this != &o) {
        if (table_) table_->unpin(inode_);
        table_ = std::exchange(o.table_, nullptr);
        inode_ = std::exchange(o.inode_, nullptr);
        fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
}

PathFd::~PathFd() {
    if (table_) table_->unpin(inode_);
}

InodeTable::InodeTable(UniqueFd root_fd, const struct stat& root_st, std::uint32_t max_fds)
    : max_fds_(max_fds) {
    root_.id = SrcId{root_st.st_ino, root_st.st_dev};
    root_.is_dir = true;
    root_.nlookup = 1;
    root_.fd = root_fd.release();
    if (auto p = sys::fd_path(root_.fd)) source_prefix_ = *p;
    if (auto m = sys::openat(AT_FDCWD, sys::ProcFdPath(root_.fd).c_str(), O_RDONLY | O_DIRECTORY)) {
        mount_fd_ = std::move(*m);
    }
    auto h = sys::file_handle(root_.fd);
    handles_supported_ = h.has_value() && mount_fd_.valid();
    if (!handles_supported_) {
        spdlog::warn("{}: the filesystem has no file handles ({}); one fd per known inode is kept, "
                     "max_fds cannot be enforced",
                     source_prefix_, std::strerror(h.error()));
    }
}

InodeTable::~InodeTable() {
    for (auto& [id, inode] : inodes_) {
        if (inode->fd >= 0) ::close(inode->fd);
    }
    if (root_.fd >= 0) ::close(root_.fd);
}

std::size_t InodeTable::capacity() const noexcept {
    std::size_t used = kReserve + open_handles_.load(std::memory_order_relaxed);
    return max_fds_ > used + kMinCache ? max_fds_ - used : kMinCache;
}

void InodeTable::lru_add_locked(Inode* inode) noexcept {
    if (inode->in_lru || inode->handle.empty() || inode->opens > 0 || inode == &root_) return;
    lru_.push_front(inode);
    inode->lru_pos = lru_.begin();
    inode->in_lru = true;
}

void InodeTable::lru_remove_locked(Inode* inode) noexcept {
    if (!inode->in_lru) return;
    lru_.erase(inode->lru_pos);
    inode->in_lru = false;
}

void InodeTable::evict_locked(std::vector<int>& to_close) noexcept {
    const std::size_t cap = capacity();
    auto it = lru_.end();
    while (cached_ > cap && it != lru_.begin()) {
        --it;
        Inode* victim = *it;
        if (victim->pins > 0) continue;
        it = lru_.erase(it);
        victim->in_lru = false;
        to_close.push_back(victim->fd);
        victim->fd = -1;
        --cached_;
    }
}

SysResult<PathFd> InodeTable::path_fd(Inode& inode) noexcept {
    {
        std::lock_guard lock(fd_mu_);
        if (inode.fd >= 0) {
            ++inode.pins;
            if (inode.in_lru && inode.lru_pos != lru_.begin()) {
                lru_.splice(lru_.begin(), lru_, inode.lru_pos);
            }
            return PathFd(this, &inode, inode.fd);
        }
    }
    if (inode.handle.empty()) return std::unexpected(ESTALE);
    auto opened = sys::open_by_handle(mount_fd_.get(), inode.handle, O_PATH | O_NOFOLLOW);
    if (!opened) return std::unexpected(opened.error());
    std::vector<int> to_close;
    int fd;
    {
        std::lock_guard lock(fd_mu_);
        if (inode.fd < 0) {
            inode.fd = opened->release();
            ++cached_;
            lru_add_locked(&inode);
        }
        ++inode.pins;
        fd = inode.fd;
        evict_locked(to_close);
    }
    for (int c : to_close) ::close(c);
    return PathFd(this, &inode, fd);
}

void InodeTable::unpin(Inode* inode) noexcept {
    std::vector<int> to_close;
    bool last_of_reaped = false;
    {
        std::lock_guard lock(fd_mu_);
        --inode->pins;
        if (inode->reaped && inode->pins == 0) {
            last_of_reaped = true;
            if (inode->fd >= 0) {
                to_close.push_back(inode->fd);
                inode->fd = -1;
                --cached_;
            }
        }
        if (cached_ > capacity()) evict_locked(to_close);
    }
    for (int c : to_close) ::close(c);
    if (last_of_reaped) delete inode;
}

void InodeTable::add_name_locked(Inode* inode, Inode* parent, const std::string& name,
                                 std::vector<Inode*>& dead) {
    auto& names = inode->names;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i].parent == parent && names[i].name == name) {
            std::rotate(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i),
                        names.begin() + static_cast<std::ptrdiff_t>(i) + 1);
            return;
        }
    }
    names.insert(names.begin(), InodeName{parent, name});
    ++parent->children;
    // A directory has one name: the new one replaces whatever was remembered.
    const std::size_t keep = inode->is_dir ? 1 : kMaxNames;
    while (names.size() > keep) drop_name_locked(inode, names.size() - 1, dead);
}

void InodeTable::remove_name_locked(Inode* inode, Inode* parent, const std::string& name,
                                    std::vector<Inode*>& dead) {
    auto& names = inode->names;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i].parent == parent && names[i].name == name) return drop_name_locked(inode, i, dead);
    }
}

void InodeTable::drop_name_locked(Inode* inode, std::size_t index, std::vector<Inode*>& dead) {
    Inode* parent = inode->names[index].parent;
    inode->names.erase(inode->names.begin() + static_cast<std::ptrdiff_t>(index));
    --parent->children;
    release_locked(parent, dead);  // the kernel may have forgotten it already
}

fuse_ino_t InodeTable::known_id(const struct stat& st) noexcept {
    const SrcId id{st.st_ino, st.st_dev};
    if (id == root_.id) return FUSE_ROOT_ID;
    std::lock_guard lock(mu_);
    auto it = inodes_.find(id);
    return it == inodes_.end() ? 0 : id_of(it->second.get());
}

SysResult<Inode*> InodeTable::remember(Inode* parent, const char* name, const struct stat& st,
                                       UniqueFd fd, bool anonymous, const std::atomic<std::uint64_t>* ns_gen,
                                       std::uint64_t seen_gen) noexcept {
    const SrcId id{st.st_ino, st.st_dev};
    std::string handle;
    Inode* inode = nullptr;
    std::vector<Inode*> dead;
    try {
        for (int attempt = 0; attempt < 2 && !inode; ++attempt) {
            {
                std::lock_guard lock(mu_);
                // A namespace op bumps the generation before it updates the table under mu_:
                // seeing the old value here means its update comes after ours and corrects it.
                if (ns_gen && ns_gen->load() != seen_gen) return std::unexpected(EAGAIN);
                auto it = inodes_.find(id);
                if (it == inodes_.end() && id == root_.id) {
                    inode = &root_;  // e.g. a bind mount of SOURCE inside itself
                } else if (it != inodes_.end()) {
                    inode = it->second.get();
                } else if (attempt == 1) {
                    auto fresh = std::make_unique<Inode>();
                    fresh->id = id;
                    fresh->is_dir = S_ISDIR(st.st_mode);
                    fresh->handle = std::move(handle);
                    inode = fresh.get();
                    inodes_.emplace(id, std::move(fresh));
                }
                if (inode) {
                    ++inode->nlookup;
                    if (inode != &root_) {
                        if (anonymous) {
                            inode->anonymous = true;
                        } else {
                            add_name_locked(inode, parent, name, dead);
                            inode->anonymous = false;
                        }
                    }
                    break;
                }
            }
            // Unknown node: take its handle outside the lock, then insert.
            if (handles_supported_ && fd) {
                auto h = sys::file_handle(fd.get());
                if (h) handle = std::move(*h);
            }
        }
    } catch (const std::bad_alloc&) {
        reap(dead);
        return std::unexpected(ENOMEM);
    }
    reap(dead);
    if (fd) {
        std::vector<int> to_close;
        {
            std::lock_guard lock(fd_mu_);
            if (inode->fd < 0) {
                inode->fd = fd.release();
                ++cached_;
                lru_add_locked(inode);
                evict_locked(to_close);
            }
        }
        for (int c : to_close) ::close(c);
    }
    return inode;
}

SysResult<Inode*> InodeTable::remember_anonymous(const struct stat& st, UniqueFd fd) noexcept {
    if (!fd) return std::unexpected(EBADF);
    if (!reserve_open()) return std::unexpected(ENFILE);
    const SrcId id{st.st_ino, st.st_dev};
    std::string handle;
    if (handles_supported_) {
        if (auto h = sys::file_handle(fd.get())) handle = std::move(*h);
    }
    Inode* inode = nullptr;
    std::vector<Inode*> dead;
    try {
        std::lock_guard lock(mu_);
        if (auto it = inodes_.find(id); it != inodes_.end()) {
            // A node the table still remembers under this number was deleted on SOURCE
            // (outside the mount, while the kernel still knew it), since a fresh O_TMPFILE
            // got its number; nothing held it open (else the number would not be free). What
            // the table knew of it is stale: the handle would reopen nothing (ESTALE) and its
            // names are not this file's.
            inode = it->second.get();
            inode->handle = std::move(handle);
            while (!inode->names.empty()) drop_name_locked(inode, inode->names.size() - 1, dead);
        } else {
            auto fresh = std::make_unique<Inode>();
            fresh->id = id;
            fresh->handle = std::move(handle);
            inode = fresh.get();
            inodes_.emplace(id, std::move(fresh));
        }
        ++inode->nlookup;
        inode->anonymous = true;
    } catch (const std::bad_alloc&) {
        open_handles_.fetch_sub(1);
        return std::unexpected(ENOMEM);
    }
    std::vector<int> to_close;
    {
        std::lock_guard lock(fd_mu_);
        if (inode->anon_pin) {
            open_handles_.fetch_sub(1);
        } else {
            inode->anon_pin = true;
            ++inode->opens;
            lru_remove_locked(inode);
        }
        if (inode->fd < 0) {
            inode->fd = fd.release();
            ++cached_;
        }
        evict_locked(to_close);
    }
    for (int c : to_close) ::close(c);
    reap(dead);
    return inode;
}

void InodeTable::drop_anon_pin(Inode* inode) noexcept {
    std::lock_guard lock(fd_mu_);
    if (!inode->anon_pin) return;
    inode->anon_pin = false;
    open_handles_.fetch_sub(1);
    if (--inode->opens == 0 && inode->fd >= 0) lru_add_locked(inode);
}

void InodeTable::release_locked(Inode* inode, std::vector<Inode*>& dead) noexcept {
    // Freeing a node drops the references its names hold on their parents, which may free
    // those in turn.
    std::vector<Inode*> work{inode};
    while (!work.empty()) {
        Inode* cur = work.back();
        work.pop_back();
        if (!cur || cur == &root_ || cur->nlookup != 0 || cur->children != 0) continue;
        auto it = inodes_.find(cur->id);
        if (it == inodes_.end() || it->second.get() != cur) continue;
        dead.push_back(it->second.release());
        inodes_.erase(it);
        for (const InodeName& n : cur->names) {
            --n.parent->children;
            work.push_back(n.parent);
        }
        cur->names.clear();
    }
}

void InodeTable::forget(Inode* inode, std::uint64_t n) noexcept {
    if (inode == &root_) return;
    std::vector<Inode*> dead;
    {
        std::lock_guard lock(mu_);
        inode->nlookup = inode->nlookup > n ? inode->nlookup - n : 0;
        release_locked(inode, dead);
    }
    reap(dead);
}

void InodeTable::reap(std::vector<Inode*>& dead) noexcept {
    if (dead.empty()) return;
    // A handler may still hold a PathFd of a node the kernel has just forgotten: it replies
    // first and unpins after, and the FORGET that the reply allowed can run on another worker
    // in between. Such a node is only marked; its last unpin closes the fd and frees it.
    std::vector<int> to_close;
    std::vector<Inode*> free_now;
    {
        std::lock_guard lock(fd_mu_);
        for (Inode* d : dead) {
            lru_remove_locked(d);
            if (d->anon_pin) {  // an O_TMPFILE forgotten without being linked in
                d->anon_pin = false;
                --d->opens;
                open_handles_.fetch_sub(1);
            }
            if (d->pins > 0) {
                d->reaped = true;
                continue;
            }
            if (d->fd >= 0) {
                to_close.push_back(d->fd);
                --cached_;
            }
            free_now.push_back(d);
        }
    }
    for (int c : to_close) ::close(c);
    for (Inode* d : free_now) delete d;
}

void InodeTable::renamed(SrcId moved, Inode* old_parent, const std::string& old_name, Inode* new_parent,
                         const std::string& new_name) noexcept {
    std::vector<Inode*> dead;
    {
        std::lock_guard lock(mu_);
        auto it = inodes_.find(moved);
        if (it != inodes_.end()) {
            Inode* inode = it->second.get();
            remove_name_locked(inode, old_parent, old_name, dead);
            try {
                add_name_locked(inode, new_parent, new_name, dead);
            } catch (const std::bad_alloc&) {
                // Without the name the path falls back to /proc (never a stale one).
            }
        }
    }
    reap(dead);
}

void InodeTable::name_removed(SrcId id, Inode* parent, const std::string& name,
                              std::uint64_t nlink_after) noexcept {
    std::vector<Inode*> dead;
    {
        std::lock_guard lock(mu_);
        auto it = inodes_.find(id);
        if (it != inodes_.end()) {
            Inode* inode = it->second.get();
            remove_name_locked(inode, parent, name, dead);
            if (nlink_after == 0) inode->anonymous = true;
        }
    }
    reap(dead);
}

void InodeTable::linked(SrcId id, Inode* parent, const std::string& name) noexcept {
    std::vector<Inode*> dead;
    Inode* named = nullptr;
    {
        std::lock_guard lock(mu_);
        auto it = inodes_.find(id);
        if (it != inodes_.end()) {
            named = it->second.get();
            named->anonymous = false;
            try {
                add_name_locked(named, parent, name, dead);
            } catch (const std::bad_alloc&) {
            }
        }
    }
    // Named now: reopened by its handle like any node, so its fd may go back to the cache.
    // (The kernel holds a reference to it until the LINK reply: it is not freed meanwhile.)
    if (named) drop_anon_pin(named);
    reap(dead);
}

bool InodeTable::is_anonymous(Inode& inode) noexcept {
    std::lock_guard lock(mu_);
    return inode.anonymous;
}

std::optional<std::string> InodeTable::path_locked(Inode& inode) {
    std::vector<const std::string*> parts;
    for (Inode* cur = &inode; cur != &root_; cur = cur->names.front().parent) {
        if (cur->names.empty() || parts.size() >= kMaxDepth) return std::nullopt;
        parts.push_back(&cur->names.front().name);
    }
    std::string out;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (!out.empty()) out.push_back('/');
        out += **it;
    }
    return out;
}

std::vector<InodeTable::KnownNode> InodeTable::known_nodes(const std::string& under) {
    std::vector<KnownNode> out;
    std::lock_guard lock(mu_);
    out.reserve(inodes_.size() + 1);
    auto add = [&](Inode& node) {
        KnownNode k;
        k.path = node.anonymous ? std::nullopt : path_locked(node);
        if (k.path && !under.empty() && !(*k.path == under || (k.path->size() > under.size() &&
                                                              k.path->starts_with(under) && (*k.path)[under.size()] == '/'))) {
            return;
        }
        k.id = id_of(&node);
        k.is_dir = node.is_dir;
        for (const InodeName& n : node.names) {
            if (n.parent != nullptr) k.names.emplace_back(id_of(n.parent), n.name);
        }
        out.push_back(std::move(k));
    };
    add(root_);
    for (auto& [id, node] : inodes_) add(*node);
    return out;
}

std::optional<std::string> InodeTable::path_of(Inode& inode) {
    {
        std::lock_guard lock(mu_);
        if (inode.anonymous) return std::nullopt;
        if (auto p = path_locked(inode)) return p;
    }
    // Last known name gone (e.g. one of several hard links removed): ask the kernel.
    auto fd = path_fd(inode);
    if (!fd) return std::nullopt;
    auto full = sys::fd_path(fd->get());
    if (!full || full->ends_with(" (deleted)")) return std::nullopt;
    std::string_view rest = *full;
    if (!rest.starts_with(source_prefix_)) return std::nullopt;
    rest.remove_prefix(source_prefix_.size());
    if (!rest.empty() && rest.front() != '/' && source_prefix_ != "/") return std::nullopt;
    while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    return std::string(rest);
}

std::optional<std::string> InodeTable::child_path(Inode& parent, const char* name) {
    auto p = path_of(parent);
    if (!p) return std::nullopt;
    if (!p->empty()) p->push_back('/');
    p->append(name);
    return p;
}

bool InodeTable::reserve_open() noexcept {
    if (open_handles_.fetch_add(1) + kReserve + kMinCache >= max_fds_) {
        open_handles_.fetch_sub(1);
        spdlog::warn("open refused: {} open files and unlinked O_TMPFILEs reach the fd budget max_fds={}",
                     open_handles_.load(), max_fds_);
        return false;
    }
    return true;
}

SysResult<void> InodeTable::begin_open(Inode& inode) noexcept {
    if (!reserve_open()) return std::unexpected(ENFILE);
    std::vector<int> to_close;
    {
        std::lock_guard lock(fd_mu_);
        ++inode.opens;
        lru_remove_locked(&inode);
        evict_locked(to_close);
    }
    for (int c : to_close) ::close(c);
    return {};
}

void InodeTable::end_open(Inode& inode) noexcept {
    open_handles_.fetch_sub(1);
    std::lock_guard lock(fd_mu_);
    if (--inode.opens == 0 && inode.fd >= 0) lru_add_locked(&inode);
}

std::size_t InodeTable::size() {
    std::lock_guard lock(mu_);
    return inodes_.size();
}

std::size_t InodeTable::cached_fds() {
    std::lock_guard lock(fd_mu_);
    return cached_;
}

}  // namespace sfs::fs
