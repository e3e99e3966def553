#include "common/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace sfs {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnDestruction) {
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    { UniqueFd fd(raw); EXPECT_TRUE(is_open(raw)); }
    EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = a.get();
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
    b = UniqueFd();
    EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, ReleaseKeepsFdOpen) {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    int raw = a.release();
    EXPECT_TRUE(is_open(raw));
    ::close(raw);
}

}  // namespace
}  // namespace sfs
