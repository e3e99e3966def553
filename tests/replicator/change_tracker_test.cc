// Interval sets and the change tracker: coalescing of writes per (inode, epoch), the
// inode -> path map across renames, and the journal order of records.
#include "replicator/change_tracker.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>

namespace sfs::repl {
namespace {

using namespace std::chrono_literals;
using K = fs::ChangeKind;

TEST(IntervalSet, MergesOverlappingAndAdjacentRanges) {
    IntervalSet s;
    s.add(10, 10);   // [10,20)
    s.add(30, 10);   // [30,40)
    s.add(20, 5);    // adjacent to the first -> [10,25)
    EXPECT_EQ(s.ranges(), (std::vector<ByteRange>{{10, 15}, {30, 10}}));
    s.add(0, 100);   // swallows all
    EXPECT_EQ(s.ranges(), (std::vector<ByteRange>{{0, 100}}));
    s.add(200, 0);   // empty ignored
    EXPECT_EQ(s.count(), 1u);
    s.add(150, 10);
    s.add(99, 52);   // bridges [0,100) and [150,160)
    EXPECT_EQ(s.ranges(), (std::vector<ByteRange>{{0, 160}}));
    EXPECT_EQ(s.bytes(), 160u);
    EXPECT_EQ(s.take().size(), 1u);
    EXPECT_TRUE(s.empty());
    s.add(~0ull - 5, 100);  // clamps instead of overflowing
    EXPECT_EQ(s.ranges().front().offset, ~0ull - 5);
}

struct TrackerTest : ::testing::Test {
    std::string dir;
    std::unique_ptr<Journal> journal;
    std::unique_ptr<ChangeTracker> tracker;
    void SetUp() override {
        char tmpl[] = "/tmp/tracker_test.XXXXXX";
        dir = ::mkdtemp(tmpl);
        journal = std::move(*Journal::open(dir));
        tracker = std::make_unique<ChangeTracker>(*journal, 2, 0ms);
    }
    void TearDown() override {
        tracker.reset();
        journal.reset();
        std::filesystem::remove_all(dir);
    }
    void change(K kind, std::uint64_t ino, std::string path, std::string path2 = {}, std::uint64_t off = 0,
                std::uint64_t len = 0, std::uint64_t nlink = 0) {
        fs::ChangeRecord r;
        r.kind = kind;
        r.ino = ino;
        r.path = std::move(path);
        r.path2 = std::move(path2);
        r.offset = off;
        r.length = len;
        r.nlink = nlink;
        tracker->on_change(r);
    }
    std::vector<DecodedRecord> records() {
        EXPECT_TRUE(journal->wait_durable(journal->last_seq(), 10s));
        std::vector<DecodedRecord> out;
        Journal::Reader reader(*journal, 0);
        DecodedRecord rec;
        while (*reader.next(rec)) out.push_back(rec);
        return out;
    }
};

TEST_F(TrackerTest, WritesToOneFileCoalesceIntoOneTake) {
    change(K::Create, 7, "a");
    for (int i = 0; i < 100; ++i) change(K::Write, 7, "a", {}, i * 4096, 4096);
    auto recs = records();
    ASSERT_EQ(recs.size(), 101u);
    const NodeKey key{7, recs[0].seq};  // epoch = seq of the Create
    EXPECT_EQ(recs[1].epoch, key.epoch);
    // The first Write record takes all 100 writes as one range; the others are covered.
    auto first = tracker->take_ranges(0, key, recs[1].seq, 0, 4096);
    EXPECT_EQ(first, (std::vector<ByteRange>{{0, 100 * 4096}}));
    for (std::size_t i = 2; i < recs.size(); ++i) {
        EXPECT_TRUE(tracker->take_ranges(0, key, recs[i].seq, recs[i].record.offset, 4096).empty());
    }
    // Mirror 1 has its own copy of the ranges.
    EXPECT_EQ(tracker->pending_bytes(1), 100u * 4096);
    EXPECT_EQ(tracker->pending_bytes(0), 0u);
    // A later write is taken by its own record.
    change(K::Write, 7, "a", {}, 1 << 20, 10);
    recs = records();
    EXPECT_EQ(tracker->take_ranges(0, key, recs.back().seq, 1 << 20, 10), (std::vector<ByteRange>{{1 << 20, 10}}));
}

TEST_F(TrackerTest, RenamesMoveTheSourcePathOfPendingFiles) {
    change(K::Mkdir, 2, "d");
    change(K::Create, 3, "d/f");
    change(K::Write, 3, "d/f", {}, 0, 10);
    change(K::Rename, 2, "d", "e");
    change(K::Write, 3, "d/f", {}, 10, 10);  // stale path from the fs: the map knows better
    auto recs = records();
    const NodeKey key{3, recs[1].seq};
    EXPECT_EQ(tracker->source_path(key), "e/f");
    EXPECT_EQ(recs[2].record.path, "d/f");  // the mirror is at that position: old name
    EXPECT_EQ(recs[4].record.path, "e/f");  // journaled with the name at its position
    change(K::Rename, 3, "e/f", "e/g");
    EXPECT_EQ(tracker->source_path(key), "e/g");
    // Rename over a pending file: the replaced node loses its name.
    change(K::Create, 4, "h");
    change(K::Write, 4, "h", {}, 0, 1);
    change(K::Rename, 3, "e/g", "h");
    auto recs2 = records();
    EXPECT_EQ(tracker->source_path(key), "h");
    EXPECT_EQ(tracker->source_path(NodeKey{4, recs2[6].seq}), std::nullopt);
}

TEST_F(TrackerTest, ReusedInodeNumberGetsANewEpoch) {
    change(K::Create, 9, "old");
    change(K::Write, 9, "old", {}, 0, 100);
    change(K::Unlink, 9, "old", {}, 0, 0, 0);
    change(K::Create, 9, "new");
    change(K::Write, 9, "new", {}, 0, 50);
    auto recs = records();
    const NodeKey old_key{9, recs[0].seq}, new_key{9, recs[3].seq};
    ASSERT_NE(old_key.epoch, new_key.epoch);
    EXPECT_EQ(recs[4].epoch, new_key.epoch);
    EXPECT_EQ(tracker->source_path(old_key), std::nullopt);  // gone: its data is never read
    EXPECT_EQ(tracker->source_path(new_key), "new");
    EXPECT_EQ(tracker->take_ranges(0, old_key, recs[1].seq, 0, 100), (std::vector<ByteRange>{{0, 100}}));
    EXPECT_EQ(tracker->take_ranges(0, new_key, recs[4].seq, 0, 50), (std::vector<ByteRange>{{0, 50}}));
}

TEST_F(TrackerTest, HardlinkKeepsAnotherName) {
    change(K::Create, 5, "a");
    change(K::Write, 5, "a", {}, 0, 1);
    change(K::Link, 5, "b", "a");
    change(K::Unlink, 5, "a", {}, 0, 0, 1);
    auto recs = records();
    EXPECT_EQ(tracker->source_path(NodeKey{5, recs[0].seq}), "b");
}

// A file from before the journal, linked as "a" and "c", first seen written through "a":
// after "a" is unlinked the map knows none of its names. The next write through "c" gives
// it that name back; the sender used to find no path and silently not send the data.
TEST_F(TrackerTest, WriteThroughANameTheMapNeverSawGivesTheNodeThatName) {
    change(K::Write, 6, "a", {}, 0, 10);
    change(K::Unlink, 6, "a", {}, 0, 0, 1);
    change(K::Write, 6, "c", {}, 0, 5);
    auto recs = records();
    ASSERT_EQ(recs.size(), 3u);
    EXPECT_EQ(recs[2].record.path, "c");
    EXPECT_EQ(tracker->source_path(NodeKey{6, 0}), "c");
}

TEST_F(TrackerTest, RestoredRangesAreTakenAgainByTheResentRecord) {
    change(K::Create, 7, "a");
    change(K::Write, 7, "a", {}, 0, 10);
    change(K::Write, 7, "a", {}, 100, 10);
    auto recs = records();
    const NodeKey key{7, recs[0].seq};
    auto taken = tracker->take_ranges(0, key, recs[1].seq, 0, 10);
    ASSERT_EQ(taken.size(), 2u);
    tracker->restore_ranges(0, key, taken, recs[1].seq, tracker->taken_through(0, key));  // lost before the ack
    EXPECT_EQ(tracker->take_ranges(0, key, recs[1].seq, 0, 10), taken);
    tracker->prune(0, recs[2].seq);
    // A record from a previous process (not seen live) brings its own range.
    EXPECT_EQ(tracker->take_ranges(0, NodeKey{77, 0}, 999999, 5, 5), (std::vector<ByteRange>{{5, 5}}));
}

TEST_F(TrackerTest, TruncateSeparatesWritesBeforeAndAfterIt) {
    change(K::Create, 7, "a");
    change(K::Write, 7, "a", {}, 0, 100);
    fs::ChangeRecord t;
    t.kind = K::Setattr;
    t.ino = 7;
    t.path = "a";
    t.attr_mask = fs::kAttrSize;
    t.size = 10;
    tracker->on_change(t);
    change(K::Write, 7, "a", {}, 50, 50);
    auto recs = records();
    const NodeKey key{7, recs[0].seq};
    // The write before the truncate must not carry the later one: replaying the truncate
    // after it would cut the later data off the mirror.
    EXPECT_EQ(tracker->take_ranges(0, key, recs[1].seq, 0, 100), (std::vector<ByteRange>{{0, 100}}));
    EXPECT_EQ(tracker->take_ranges(0, key, recs[3].seq, 50, 50), (std::vector<ByteRange>{{50, 50}}));
}

// utimes between two writes: the first write's transfer ends with SOURCE's current mtime,
// the replayed utimes then sets the older one, so the second write must be sent (with its
// mtime) after it, not folded into the first (the mirror kept the utimes time).
TEST_F(TrackerTest, TimeChangeSeparatesWritesBeforeAndAfterIt) {
    change(K::Create, 8, "b");
    change(K::Write, 8, "b", {}, 0, 100);
    fs::ChangeRecord t;
    t.kind = K::Setattr;
    t.ino = 8;
    t.path = "b";
    t.attr_mask = fs::kAttrAtime | fs::kAttrMtime;
    tracker->on_change(t);
    change(K::Write, 8, "b", {}, 200, 10);
    auto recs = records();
    const NodeKey key{8, recs[0].seq};
    EXPECT_EQ(tracker->take_ranges(0, key, recs[1].seq, 0, 100), (std::vector<ByteRange>{{0, 100}}));
    EXPECT_EQ(tracker->take_ranges(0, key, recs[3].seq, 200, 10), (std::vector<ByteRange>{{200, 10}}));
}

TEST(TrackerDelay, RecordsBecomeReadyAfterTheWindow) {
    char tmpl[] = "/tmp/tracker_test.XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    {
        auto journal = std::move(*Journal::open(dir));
        ChangeTracker tracker(*journal, 1, 200ms);
        fs::ChangeRecord r;
        r.kind = K::Mkdir;
        r.path = "x";
        tracker.on_change(r);
        ASSERT_TRUE(journal->wait_durable(1, 10s));
        EXPECT_EQ(tracker.ready_seq(), 0u);
        std::this_thread::sleep_for(250ms);
        EXPECT_EQ(tracker.ready_seq(), 1u);
    }
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sfs::repl
