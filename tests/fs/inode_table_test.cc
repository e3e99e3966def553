// InodeTable without a mount: the lifetime rules the FUSE handlers rely on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "fs/inode_table.h"

namespace sfs::fs {
namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/syncfs-inodes.XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// A handler replies, and only then drops its PathFd; the kernel may forget the node in
// between (the FORGET runs on another worker). The node and its fd must outlive the pin:
// before, the FORGET freed the node under the pin and the unpin wrote into freed memory.
TEST(InodeTable, NodeForgottenWhilePinnedLivesUntilTheLastUnpin) {
    TempDir dir;
    ASSERT_EQ(::close(::open((dir.path + "/f").c_str(), O_CREAT | O_WRONLY, 0644)), 0);
    UniqueFd root(::open(dir.path.c_str(), O_PATH | O_DIRECTORY));
    struct stat root_st, st;
    ASSERT_EQ(::fstat(root.get(), &root_st), 0);
    InodeTable table(std::move(root), root_st, 64);
    UniqueFd node_fd(::openat(table.root_fd(), "f", O_PATH | O_NOFOLLOW));
    ASSERT_TRUE(node_fd);
    ASSERT_EQ(::fstat(node_fd.get(), &st), 0);
    auto node = table.remember(&table.root(), "f", st, std::move(node_fd));
    ASSERT_TRUE(node.has_value());
    {
        auto pinned = table.path_fd(**node);
        ASSERT_TRUE(pinned.has_value());
        const int fd = pinned->get();
        table.forget(*node, 1);  // the kernel's last reference: gone from the table
        EXPECT_EQ(table.size(), 0u);
        // Still usable by the handler that pinned it.
        struct stat again;
        EXPECT_EQ(::fstat(fd, &again), 0);
        EXPECT_EQ(again.st_ino, st.st_ino);
    }  // last unpin: closes the fd and frees the node (ASan/valgrind check the free)
    EXPECT_EQ(table.cached_fds(), 0u);
}

// Builds a table over a temp dir and remembers `name` (a file there) under the root.
struct TableFixture {
    TempDir dir;
    std::unique_ptr<InodeTable> table;
    TableFixture() {
        UniqueFd root(::open(dir.path.c_str(), O_PATH | O_DIRECTORY));
        struct stat root_st;
        EXPECT_EQ(::fstat(root.get(), &root_st), 0);
        table = std::make_unique<InodeTable>(std::move(root), root_st, 64);
    }
    SysResult<Inode*> remember(const std::string& name, const std::atomic<std::uint64_t>* gen = nullptr,
                               std::uint64_t seen = 0) {
        UniqueFd fd(::openat(table->root_fd(), name.c_str(), O_PATH | O_NOFOLLOW));
        struct stat st;
        EXPECT_EQ(::fstat(fd.get(), &st), 0);
        return table->remember(&table->root(), name.c_str(), st, std::move(fd), false, gen, seen);
    }
    void touch(const std::string& name) { ASSERT_EQ(::close(::open((dir.path + "/" + name).c_str(), O_CREAT | O_WRONLY, 0644)), 0); }
};

// Every name a node is known under stays usable until that very name is removed: a hard
// link's path survives the unlink of the name it was last seen under, and a rename moves
// exactly the name it moved.
TEST(InodeTable, PathFollowsTheNamesThatStillExist) {
    TableFixture t;
    t.touch("f");
    auto node = t.remember("f");
    ASSERT_TRUE(node.has_value());
    InodeTable& table = *t.table;
    Inode& root = table.root();
    const SrcId id = (*node)->id;
    ASSERT_EQ(::linkat(table.root_fd(), "f", table.root_fd(), "g", 0), 0);
    table.linked(id, &root, "g");
    EXPECT_EQ(table.path_of(**node), "g");
    ASSERT_EQ(::unlinkat(table.root_fd(), "g", 0), 0);
    table.name_removed(id, &root, "g", 1);
    EXPECT_EQ(table.path_of(**node), "f");
    ASSERT_EQ(::linkat(table.root_fd(), "f", table.root_fd(), "h", 0), 0);
    table.linked(id, &root, "h");
    ASSERT_EQ(::unlinkat(table.root_fd(), "f", 0), 0);
    table.name_removed(id, &root, "f", 1);
    EXPECT_EQ(table.path_of(**node), "h");
    ASSERT_EQ(::renameat(table.root_fd(), "h", table.root_fd(), "i"), 0);
    table.renamed(id, &root, "h", &root, "i");
    EXPECT_EQ(table.path_of(**node), "i");
    ASSERT_EQ(::unlinkat(table.root_fd(), "i", 0), 0);
    table.name_removed(id, &root, "i", 0);
    EXPECT_EQ(table.path_of(**node), std::nullopt);
}

// A lookup made without ns_mu while a namespace op ran (the generation moved) records
// nothing: the name it opened may be gone already, and a stale name would send the next
// record of that node to whatever holds the name then.
TEST(InodeTable, LookupRacingWithANamespaceOpIsRefused) {
    TableFixture t;
    t.touch("f");
    std::atomic<std::uint64_t> gen{7};
    const std::uint64_t seen = gen.load();
    gen.fetch_add(1);  // e.g. "f" renamed away after the lookup opened it
    auto refused = t.remember("f", &gen, seen);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), EAGAIN);
    EXPECT_EQ(t.table->size(), 0u);
    auto accepted = t.remember("f", &gen, gen.load());
    ASSERT_TRUE(accepted.has_value());
    EXPECT_EQ(t.table->path_of(**accepted), "f");
}

// An O_TMPFILE node (remember_anonymous) has no path, holds its fd and one unit of the
// open-handle budget until it is linked in or forgotten, and the budget bounds how many
// there can be.
TEST(InodeTable, TmpfileNodePinsItsFdUntilLinkedOrForgotten) {
    TempDir dir;
    UniqueFd root(::open(dir.path.c_str(), O_PATH | O_DIRECTORY));
    struct stat root_st;
    ASSERT_EQ(::fstat(root.get(), &root_st), 0);
    InodeTable table(std::move(root), root_st, 128);
    auto make = [&]() -> SysResult<Inode*> {
        UniqueFd file(::openat(table.root_fd(), ".", O_TMPFILE | O_RDWR, 0600));
        EXPECT_TRUE(file) << std::strerror(errno);
        struct stat st;
        EXPECT_EQ(::fstat(file.get(), &st), 0);
        UniqueFd path(::open(("/proc/self/fd/" + std::to_string(file.get())).c_str(), O_PATH));
        return table.remember_anonymous(st, std::move(path));
    };
    auto a = make();
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(table.open_handles(), 1u);
    EXPECT_EQ(table.path_of(**a), std::nullopt);
    ASSERT_TRUE(table.begin_open(**a).has_value());
    table.end_open(**a);
    EXPECT_EQ(table.open_handles(), 1u);  // closed, still pinned
    {
        auto fd = table.path_fd(**a);
        ASSERT_TRUE(fd.has_value());
        ASSERT_EQ(::linkat(fd->get(), "", table.root_fd(), "t", AT_EMPTY_PATH), 0) << std::strerror(errno);
    }
    table.linked((*a)->id, &table.root(), "t");
    EXPECT_EQ(table.open_handles(), 0u);
    EXPECT_EQ(table.path_of(**a), "t");

    auto b = make();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(table.size(), 2u);
    table.forget(*b, 1);
    EXPECT_EQ(table.size(), 1u);
    EXPECT_EQ(table.open_handles(), 0u);
    EXPECT_EQ(table.cached_fds(), 1u);  // only t's

    std::vector<Inode*> held;
    for (int i = 0; i < 200; ++i) {
        auto n = make();
        if (!n) {
            EXPECT_EQ(n.error(), ENFILE);
            break;
        }
        held.push_back(*n);
    }
    EXPECT_EQ(held.size(), 128u - 64u);  // max_fds minus the reserve and the cache's minimum
    for (Inode* n : held) table.forget(n, 1);
    EXPECT_EQ(table.open_handles(), 0u);
    EXPECT_LE(table.cached_fds(), 1u);  // t's fd may have been evicted meanwhile
}

}  // namespace
}  // namespace sfs::fs
