// Pure logic: coalescing a batch of outside changes, exclude patterns, echo TTL.
#include <gtest/gtest.h>

#include <thread>

#include "replicator/watch/change_queue.h"
#include "replicator/watch/coalesce.h"
#include "replicator/watch/echo_filter.h"
#include "replicator/watch/exclude.h"

namespace sfs::repl::watch {
namespace {

using K = OutsideChange::Kind;

OutsideChange ch(K kind, std::string path, std::string path2 = {}, bool is_dir = false) {
    return OutsideChange{kind, std::move(path), std::move(path2), is_dir};
}

TEST(WatchCoalesce, DuplicatesMergeIntoTheFirstWithTheStrongestKind) {
    auto out = coalesce({ch(K::Attrib, "a"), ch(K::Modified, "b"), ch(K::Modified, "a"), ch(K::Created, "a"),
                         ch(K::Modified, "b")});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0], ch(K::Created, "a"));
    EXPECT_EQ(out[1], ch(K::Modified, "b"));
}

TEST(WatchCoalesce, OverflowSubtreesComeFirstAndSwallowWhatTheyCover) {
    auto out = coalesce({ch(K::Modified, "x/f"), ch(K::Overflow, "x/y", {}, true), ch(K::Created, "x/y/z"),
                         ch(K::Overflow, "x", {}, true), ch(K::Modified, "xx/f"), ch(K::Deleted, "x/g")});
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0], ch(K::Overflow, "x", {}, true));
    EXPECT_EQ(out[1], ch(K::Modified, "xx/f"));  // "xx" is not under "x"
}

TEST(WatchCoalesce, WholeTreeOverflowLeavesOnlyItself) {
    auto out = coalesce({ch(K::Modified, "a"), ch(K::Overflow, "", {}, true), ch(K::Renamed, "b", "c")});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].kind, K::Overflow);
    EXPECT_EQ(out[0].path, "");
}

TEST(WatchCoalesce, RenameHalfCoveredByOverflowKeepsTheOtherHalf) {
    auto out = coalesce({ch(K::Overflow, "o", {}, true), ch(K::Renamed, "o/a", "b"), ch(K::Renamed, "c", "o/d", true)});
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[1], ch(K::Created, "b"));
    EXPECT_EQ(out[2], ch(K::Deleted, "c", {}, true));
}

TEST(WatchCoalesce, NeverMergesAcrossARenameOrDeleteOfThePathOrAnAncestor) {
    auto out = coalesce({ch(K::Modified, "d/a"), ch(K::Renamed, "d", "e", true), ch(K::Modified, "d/a"),
                         ch(K::Modified, "f"), ch(K::Deleted, "f"), ch(K::Created, "f"), ch(K::Modified, "g")});
    std::vector<OutsideChange> want = {ch(K::Modified, "d/a"), ch(K::Renamed, "d", "e", true), ch(K::Modified, "d/a"),
                                       ch(K::Modified, "f"),   ch(K::Deleted, "f"),              ch(K::Created, "f"),
                                       ch(K::Modified, "g")};
    EXPECT_EQ(out, want);
    // A rename onto a path also ends the merge window of that path.
    out = coalesce({ch(K::Modified, "t"), ch(K::Renamed, "s", "t"), ch(K::Modified, "t")});
    EXPECT_EQ(out.size(), 3u);
}

TEST(WatchExclude, ComponentAndPathPatterns) {
    ExcludeList ex({"*.tmp", "cache", "/build/out", "logs/*.log"});
    EXPECT_TRUE(ex.excluded("a.tmp"));
    EXPECT_TRUE(ex.excluded("d/e/a.tmp"));
    EXPECT_TRUE(ex.excluded("cache"));
    EXPECT_TRUE(ex.excluded("x/cache/y"));
    EXPECT_TRUE(ex.excluded("build/out"));
    EXPECT_TRUE(ex.excluded("build/out/deep/file"));
    EXPECT_TRUE(ex.excluded("logs/a.log"));
    EXPECT_FALSE(ex.excluded("logs/sub/a.log"));
    EXPECT_FALSE(ex.excluded("x/build/out"));
    EXPECT_FALSE(ex.excluded("cached"));
    EXPECT_FALSE(ex.excluded("a.tmpx"));
    EXPECT_FALSE(ex.excluded(""));
    EXPECT_FALSE(ExcludeList().excluded("anything"));
}

NodeState file_state(ino_t ino, off_t size, long ctime_ns, mode_t mode = S_IFREG | 0644) {
    struct stat st{};
    st.st_ino = ino;
    st.st_dev = 1;
    st.st_mode = mode;
    st.st_nlink = 1;
    st.st_size = size;
    st.st_mtim = {100, ctime_ns};
    st.st_ctim = {100, ctime_ns};
    return NodeState::of(st);
}

TEST(WatchEchoFilter, AnnouncementExpiresAfterTtl) {
    EchoFilter f(std::chrono::milliseconds(100));
    auto t0 = EchoFilter::Clock::now();
    const NodeState own = file_state(7, 10, 1);
    f.expect("p", own, t0);
    EXPECT_TRUE(f.is_own("p", own, false, t0 + std::chrono::milliseconds(50)));
    EXPECT_FALSE(f.is_own("q", own, false, t0 + std::chrono::milliseconds(50)));
    EXPECT_FALSE(f.is_own("p", own, false, t0 + std::chrono::milliseconds(100)));
    f.expect("p", own, t0 + std::chrono::milliseconds(90));  // renewed
    EXPECT_TRUE(f.is_own("p", own, false, t0 + std::chrono::milliseconds(150)));
}

// A name match is not enough: only a state an own change left is an echo.
TEST(WatchEchoFilter, OnlyTheStateOwnChangesLeftIsAnEcho) {
    EchoFilter f(std::chrono::milliseconds(1000));
    auto t0 = EchoFilter::Clock::now();
    f.expect("p", file_state(7, 10, 1), t0);
    f.expect("p", file_state(7, 20, 2), t0);  // a second own write
    EXPECT_TRUE(f.is_own("p", file_state(7, 10, 1), false, t0));
    EXPECT_TRUE(f.is_own("p", file_state(7, 20, 2), false, t0));
    EXPECT_FALSE(f.is_own("p", file_state(7, 20, 3), false, t0));    // ctime moved: written again
    EXPECT_FALSE(f.is_own("p", file_state(7, 21, 2), false, t0));    // size
    EXPECT_FALSE(f.is_own("p", file_state(8, 20, 2), false, t0));    // another inode
    EXPECT_FALSE(f.is_own("p", file_state(7, 20, 2, S_IFREG | 0600), false, t0));  // chmod
    EXPECT_FALSE(f.is_own("p", NodeState::absent(), false, t0));     // removed
    EXPECT_FALSE(f.is_own("p", NodeState{}, false, t0));             // unreadable: never an echo
    f.expect("gone", NodeState::absent(), t0);
    EXPECT_TRUE(f.is_own("gone", NodeState::absent(), false, t0));
    EXPECT_FALSE(f.is_own("gone", file_state(9, 0, 5), false, t0));  // made again outside
    // A directory: entries made in it move its times, which only an attribute event weighs.
    f.expect("d", file_state(3, 4096, 1, S_IFDIR | 0755), t0);
    EXPECT_TRUE(f.is_own("d", file_state(3, 8192, 9, S_IFDIR | 0755), false, t0));
    EXPECT_FALSE(f.is_own("d", file_state(3, 8192, 9, S_IFDIR | 0755), true, t0));
    EXPECT_FALSE(f.is_own("d", file_state(3, 4096, 1, S_IFDIR | 0700), false, t0));
}

}  // namespace
}  // namespace sfs::repl::watch

namespace sfs::repl::watch {
namespace {

TEST(WatchChangeQueue, DrainsCoalescedBatches) {
    OutsideChangeQueue q(100);
    q.on_outside_change({OutsideChange::Kind::Modified, "a", {}, false});
    q.on_outside_change({OutsideChange::Kind::Modified, "a", {}, false});
    q.on_outside_change({OutsideChange::Kind::Created, "b", {}, false});
    auto batch = q.drain(std::chrono::milliseconds(0));
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].path, "a");
    EXPECT_TRUE(q.drain(std::chrono::milliseconds(10)).empty());
}

TEST(WatchChangeQueue, FullQueueCollapsesIntoOneWholeTreeReconcile) {
    OutsideChangeQueue q(10);
    for (int i = 0; i < 25; ++i) q.on_outside_change({OutsideChange::Kind::Created, "f" + std::to_string(i), {}, false});
    auto batch = q.drain(std::chrono::milliseconds(0));
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_EQ(batch[0].kind, OutsideChange::Kind::Overflow);
    EXPECT_EQ(batch[0].path, "");
    EXPECT_EQ(q.collapsed(), 1u);
    // Usable again, and collapses again when needed.
    q.on_outside_change({OutsideChange::Kind::Created, "g", {}, false});
    batch = q.drain(std::chrono::milliseconds(0));
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_EQ(batch[0].path, "g");
    for (int i = 0; i < 11; ++i) q.on_outside_change({OutsideChange::Kind::Created, "h" + std::to_string(i), {}, false});
    batch = q.drain(std::chrono::milliseconds(0));
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_EQ(batch[0].kind, OutsideChange::Kind::Overflow);
    EXPECT_EQ(q.collapsed(), 2u);
}

TEST(WatchChangeQueue, CloseWakesTheConsumer) {
    OutsideChangeQueue q;
    std::thread t([&] { EXPECT_TRUE(q.drain(std::chrono::seconds(20)).empty()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    q.close();
    t.join();
}

}  // namespace
}  // namespace sfs::repl::watch
