// The inode table: what the kernel's FUSE node ids stand for on SOURCE.
//
// Design (after libfuse's example/passthrough_hp.cc, with a bounded fd budget):
//  - A node on SOURCE is identified by (st_ino, st_dev). Each known node has one Inode; its
//    address is the fuse_ino_t handed to the kernel (FUSE_ROOT_ID maps to the root Inode).
//    `nlookup` counts the kernel's references (lookup/create/readdirplus add one, forget
//    removes n); the Inode is freed when the kernel forgot it and no child names it.
//  - An Inode does NOT own an fd. It stores the node's file handle (name_to_handle_at) and
//    an O_PATH fd is opened from it on demand (open_by_handle_at) and kept in an LRU cache
//    bounded by the fd budget. Operations pin the fd for their duration (PathFd); nodes
//    with open files keep theirs pinned until the last release, so fstat on an open but
//    unlinked file still works. If SOURCE's filesystem has no file handles the fd stays
//    pinned for the Inode's lifetime (logged once at mount time: the cap cannot hold).
//  - Path cache: each Inode remembers the names (parent Inode, name) it is known under
//    (lookup, create, link, rename through the mount), the most recent first; a directory
//    has one. Every entry is a name the node has on SOURCE right now: namespace ops through
//    the mount remove exactly the (parent, name) they removed or moved, so a hard-linked
//    file whose remembered name is unlinked still has its other names. A node's path is the
//    walk up to the root through the first names. A node with no known name falls back to
//    readlink(/proc/self/fd/N) of its O_PATH fd; an unlinked node (nlink 0) has no path.
//  - An O_TMPFILE node (remember_anonymous) has no name on SOURCE to reopen it by, and a
//    file handle of an unlinked inode may not open (ESTALE), yet the kernel may still send
//    requests for it after its last FUSE handle is closed (an O_PATH fd of it, then
//    linkat(AT_EMPTY_PATH)). So it pins its O_PATH fd until it is linked in or forgotten,
//    and that pin costs one unit of the open-handle budget (ENFILE beyond it), like an
//    open file: the fd cap holds however many tmpfiles there are.
//  - A lookup runs without ns_mu (the kernel revalidates cached entries without the parent
//    directory's lock), so it may open a name just before a rename or unlink moves it. The
//    caller passes the namespace generation it saw before opening the name; remember()
//    refuses (EAGAIN) if a namespace op ran since, and the caller redoes it under ns_mu.
//    Namespace ops bump the generation after their syscall and before updating the table.
//
// Lock order: FsContext::ns_mu (namespace ops) -> InodeTable::mu_ -> InodeTable::fd_mu_.
// No lock is held across a FUSE reply or a ChangeSink call except ns_mu.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::fs {

struct SrcId {
    ino_t ino = 0;
    dev_t dev = 0;
    bool operator==(const SrcId&) const = default;
};

struct SrcIdHash {
    std::size_t operator()(const SrcId& id) const noexcept {
        return std::hash<std::uint64_t>()(id.ino) ^ (std::hash<std::uint64_t>()(id.dev) << 1);
    }
};

struct Inode;

// One name of a node: the entry `name` in the directory `parent`.
struct InodeName {
    Inode* parent = nullptr;  // holds one `children` reference on it
    std::string name;
};

struct Inode {
    SrcId id;
    bool is_dir = false;
    std::string handle;  // struct file_handle bytes; empty: fd pinned for life

    // Guarded by InodeTable::mu_.
    std::uint64_t nlookup = 0;
    std::uint32_t children = 0;  // InodeName entries (of any Inode) whose parent is this one
    std::vector<InodeName> names;  // valid names, most recently confirmed first; dirs: at most one
    bool anonymous = false;      // nlink reached 0 (unlinked, or O_TMPFILE not linked yet)

    // Guarded by InodeTable::fd_mu_.
    int fd = -1;
    std::uint32_t pins = 0;      // PathFds in use
    std::uint32_t opens = 0;     // open file/dir handles (+1 for anon_pin): fd stays while > 0
    bool anon_pin = false;       // an O_TMPFILE node not linked in yet: one budget unit (see above)
    bool reaped = false;         // forgotten while pinned: the last unpin closes and deletes
    bool in_lru = false;
    std::list<Inode*>::iterator lru_pos;
};

class InodeTable;

// A pinned O_PATH fd of an Inode, valid until destroyed.
class PathFd {
public:
    PathFd() = default;
    PathFd(InodeTable* table, Inode* inode, int fd) : table_(table), inode_(inode), fd_(fd) {}
    PathFd(PathFd&& o) noexcept;
    PathFd& operator=(PathFd&& o) noexcept;
    PathFd(const PathFd&) = delete;
    PathFd& operator=(const PathFd&) = delete;
    ~PathFd();
    int get() const noexcept { return fd_; }

private:
    InodeTable* table_ = nullptr;
    Inode* inode_ = nullptr;
    int fd_ = -1;
};

class InodeTable {
public:
    // `root_fd`: O_PATH|O_DIRECTORY fd of SOURCE (kept for the mount's lifetime).
    // `max_fds`: the fd budget (cached path fds + open handles stay below it).
    InodeTable(UniqueFd root_fd, const struct stat& root_st, std::uint32_t max_fds);
    ~InodeTable();

    Inode& root() noexcept { return root_; }
    int root_fd() const noexcept { return root_.fd; }
    const std::string& source_prefix() const noexcept { return source_prefix_; }
    bool handles_supported() const noexcept { return handles_supported_; }

    Inode* get(fuse_ino_t ino) noexcept {
        return ino == FUSE_ROOT_ID ? &root_ : reinterpret_cast<Inode*>(ino);
    }
    fuse_ino_t id_of(Inode* inode) noexcept {
        return inode == &root_ ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(inode);
    }

    // The node id the kernel knows for SOURCE's node `st` (st_dev, st_ino), or 0 when the
    // kernel never looked it up (nothing cached). Only a number for fuse_lowlevel_notify_*:
    // the node may be forgotten right after, so never dereference it.
    fuse_ino_t known_id(const struct stat& st) noexcept;

    // A snapshot of every node the kernel knows (for invalidating the kernel's caches after
    // events were lost, docs/watcher.md): its id, every known (parent id, name) it still
    // has, and its path (nullopt when unknown). With `under` non-empty only nodes at or below
    // that path, and those whose path is unknown. Ids are numbers for
    // fuse_lowlevel_notify_* only (see known_id).
    struct KnownNode {
        fuse_ino_t id = 0;
        std::vector<std::pair<fuse_ino_t, std::string>> names;  // (parent id, name)
        bool is_dir = false;
        std::optional<std::string> path;
    };
    std::vector<KnownNode> known_nodes(const std::string& under);

    // A pinned O_PATH fd for `inode` (from the cache, or reopened by handle).
    SysResult<PathFd> path_fd(Inode& inode) noexcept;

    // Records that the kernel now knows the node `st` as `parent`/`name` (one more lookup).
    // `path_fd` is an O_PATH fd of that node; it is kept in the cache or closed.
    // `ns_gen`/`seen_gen` (callers without ns_mu): if *ns_gen moved past seen_gen, a
    // namespace op ran since the name was opened and it may be stale: nothing is recorded
    // and EAGAIN is returned (redo the lookup under ns_mu).
    SysResult<Inode*> remember(Inode* parent, const char* name, const struct stat& st,
                               UniqueFd path_fd, bool anonymous = false,
                               const std::atomic<std::uint64_t>* ns_gen = nullptr,
                               std::uint64_t seen_gen = 0) noexcept;

    // Records that the kernel now knows the O_TMPFILE node `st` (one more lookup). It has no
    // name: its records start when it is linked in (linked()). `path_fd`, an O_PATH fd of
    // it, stays pinned until then or until the node is forgotten; it costs one unit of the
    // open-handle budget, so this fails with ENFILE when the budget is exhausted.
    SysResult<Inode*> remember_anonymous(const struct stat& st, UniqueFd path_fd) noexcept;

    // The kernel dropped `n` references.
    void forget(Inode* inode, std::uint64_t n) noexcept;

    // Path bookkeeping after namespace ops through the mount (call under ns_mu, after the
    // syscall succeeded). renamed: the name old_parent/old_name of `moved` is now
    // new_parent/new_name (for RENAME_EXCHANGE call it for both nodes).
    void renamed(SrcId moved, Inode* old_parent, const std::string& old_name, Inode* new_parent,
                 const std::string& new_name) noexcept;
    void name_removed(SrcId id, Inode* parent, const std::string& name, std::uint64_t nlink_after) noexcept;
    // A link through the mount gave node `id` the name parent/name (ends an O_TMPFILE pin).
    void linked(SrcId id, Inode* parent, const std::string& name) noexcept;

    // The node's path relative to SOURCE ("" = root), or nullopt for an unlinked node.
    std::optional<std::string> path_of(Inode& inode);
    // parent's path + "/" + name.
    std::optional<std::string> child_path(Inode& parent, const char* name);
    bool is_anonymous(Inode& inode) noexcept;

    // Open handle accounting: an open holds one fd of the budget and pins the node's path
    // fd. begin_open() fails with ENFILE when the budget is exhausted.
    SysResult<void> begin_open(Inode& inode) noexcept;
    void end_open(Inode& inode) noexcept;

    // Introspection for tests and the status command.
    std::size_t size();
    std::size_t cached_fds();
    std::size_t open_handles() const noexcept { return open_handles_.load(); }

private:
    friend class PathFd;
    void unpin(Inode* inode) noexcept;
    std::optional<std::string> path_locked(Inode& inode);   // mu_ held
    void release_locked(Inode* inode, std::vector<Inode*>& dead) noexcept;  // mu_ held
    void add_name_locked(Inode* inode, Inode* parent, const std::string& name,
                         std::vector<Inode*>& dead);  // mu_ held
    void remove_name_locked(Inode* inode, Inode* parent, const std::string& name,
                            std::vector<Inode*>& dead);  // mu_ held
    void drop_name_locked(Inode* inode, std::size_t index, std::vector<Inode*>& dead);  // mu_ held
    void reap(std::vector<Inode*>& dead) noexcept;     // no lock held: closes fds, frees
    void lru_add_locked(Inode* inode) noexcept;    // fd_mu_ held
    void lru_remove_locked(Inode* inode) noexcept; // fd_mu_ held
    void evict_locked(std::vector<int>& to_close) noexcept;  // fd_mu_ held
    bool reserve_open() noexcept;                  // one unit of the open-handle budget
    void drop_anon_pin(Inode* inode) noexcept;     // no lock held
    std::size_t capacity() const noexcept;

    Inode root_;
    // open_by_handle_at needs a real (not O_PATH) fd on the filesystem: SOURCE opened
    // O_RDONLY at construction, i.e. before the mount covers it.
    UniqueFd mount_fd_;
    std::string source_prefix_;
    bool handles_supported_ = true;
    const std::uint32_t max_fds_;

    std::mutex mu_;
    std::unordered_map<SrcId, std::unique_ptr<Inode>, SrcIdHash> inodes_;

    std::mutex fd_mu_;
    std::list<Inode*> lru_;   // front = most recent
    std::size_t cached_ = 0;  // path fds held (in LRU or pinned)
    std::atomic<std::size_t> open_handles_{0};
};

}  // namespace sfs::fs
