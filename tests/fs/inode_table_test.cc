// InodeTable without a mount: the lifetime rules the FUSE handlers rely on.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
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

}  // namespace
}  // namespace sfs::fs
