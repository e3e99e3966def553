// Journal format and durability (docs/journal.md): replay, torn tails at every byte offset,
// corruption, trimming, cursor files, and a SIGKILLed writer.
#include "replicator/journal.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "replicator/state_files.h"
#include "tests/support/temp_dir.h"

namespace sfs::repl {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

struct TempDir : testsupport::TempDir {
    TempDir() : testsupport::TempDir("journal_test") {}
};

fs::ChangeRecord make_record(std::uint64_t i) {
    fs::ChangeRecord r;
    r.kind = static_cast<fs::ChangeKind>(i % 12);
    r.ino = 1000 + i;
    r.path = "dir/file-" + std::to_string(i);
    r.path2 = i % 3 ? "" : "other/" + std::to_string(i);
    r.target = i % 5 ? "" : std::string(i % 300, 'x');
    r.flags = static_cast<std::uint32_t>(i);
    r.attr_mask = 0x3f;
    r.mode = 0100644;
    r.uid = 1000;
    r.gid = 100;
    r.size = i * 4096;
    r.mtime = {static_cast<time_t>(1700000000 + i), static_cast<long>(i % 1000000000)};
    r.offset = i * 7;
    r.length = i * 13;
    r.xattr_name = i % 4 ? "" : "user.k";
    r.xattr_value = i % 4 ? "" : std::string("\0v\xff", 3);
    return r;
}

void expect_same(const fs::ChangeRecord& a, const fs::ChangeRecord& b) {
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.ino, b.ino);
    EXPECT_EQ(a.path, b.path);
    EXPECT_EQ(a.path2, b.path2);
    EXPECT_EQ(a.target, b.target);
    EXPECT_EQ(a.flags, b.flags);
    EXPECT_EQ(a.mode, b.mode);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.mtime.tv_sec, b.mtime.tv_sec);
    EXPECT_EQ(a.mtime.tv_nsec, b.mtime.tv_nsec);
    EXPECT_EQ(a.offset, b.offset);
    EXPECT_EQ(a.length, b.length);
    EXPECT_EQ(a.xattr_name, b.xattr_name);
    EXPECT_EQ(a.xattr_value, b.xattr_value);
}

std::vector<DecodedRecord> read_all(const Journal& j, std::uint64_t after = 0) {
    std::vector<DecodedRecord> out;
    Journal::Reader reader(j, after);
    for (;;) {
        DecodedRecord rec;
        auto r = reader.next(rec);
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
        if (!r || !*r) break;
        out.push_back(std::move(rec));
    }
    return out;
}

// Appends records 1..n, durable every 10 of them: a segment rotates between batches, never
// inside one, so small segments fill up one after another.
::testing::AssertionResult append_in_batches(Journal& j, std::uint64_t n) {
    for (std::uint64_t i = 1; i <= n; ++i) {
        j.append(make_record(i));
        if (i % 10 == 0 && !j.wait_durable(i, 10s)) return ::testing::AssertionFailure() << "record " << i << " not durable";
    }
    return ::testing::AssertionSuccess();
}

std::vector<std::string> segment_files(const std::string& dir) {
    std::vector<std::string> files;
    for (auto& e : stdfs::directory_iterator(dir)) {
        if (e.path().filename().string().starts_with("journal-")) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

TEST(Journal, AppendAndReplayAcrossReopen) {
    TempDir dir;
    {
        auto j = Journal::open(dir.path);
        ASSERT_TRUE(j) << j.error().message;
        for (std::uint64_t i = 1; i <= 1000; ++i) EXPECT_EQ((*j)->append(make_record(i), i * 3), i);
        ASSERT_TRUE((*j)->wait_durable(1000, 10s));
        auto recs = read_all(**j);
        ASSERT_EQ(recs.size(), 1000u);
        for (std::uint64_t i = 0; i < 1000; ++i) {
            EXPECT_EQ(recs[i].seq, i + 1);
            EXPECT_EQ(recs[i].epoch, (i + 1) * 3);
            expect_same(recs[i].record, make_record(i + 1));
        }
    }
    auto j = Journal::open(dir.path);
    ASSERT_TRUE(j) << j.error().message;
    EXPECT_EQ((*j)->replay_stats().records, 1000u);
    EXPECT_EQ((*j)->last_seq(), 1000u);
    EXPECT_EQ((*j)->append(make_record(1001)), 1001u);
    ASSERT_TRUE((*j)->wait_durable(1001, 10s));
    auto recs = read_all(**j, 990);
    ASSERT_EQ(recs.size(), 11u);
    EXPECT_EQ(recs.front().seq, 991u);
    expect_same(recs.back().record, make_record(1001));
}

TEST(Journal, ReaderSeesOnlyDurableRecordsAndFollowsAppends) {
    TempDir dir;
    auto j = Journal::open(dir.path, {.segment_bytes = 4096});
    ASSERT_TRUE(j);
    Journal::Reader reader(**j, 0);
    std::uint64_t seen = 0;
    for (std::uint64_t i = 1; i <= 300; ++i) {
        (*j)->append(make_record(i));
        if (i % 50 == 0) {
            ASSERT_TRUE((*j)->wait_durable(i, 10s));
            DecodedRecord rec;
            for (;;) {
                auto r = reader.next(rec);
                ASSERT_TRUE(r) << r.error().message;
                if (!*r) break;
                EXPECT_EQ(rec.seq, ++seen);
            }
            EXPECT_EQ(seen, i);
        }
    }
    EXPECT_GT(segment_files(dir.path).size(), 3u);  // rotation happened and the reader followed
}

TEST(Journal, TornTailAtEveryByteOfTheLastRecordEndsTheLog) {
    TempDir dir;
    std::uint64_t last_start = 0, full_size = 0;
    {
        auto j = Journal::open(dir.path);
        ASSERT_TRUE(j);
        for (std::uint64_t i = 1; i <= 9; ++i) (*j)->append(make_record(i));
        ASSERT_TRUE((*j)->wait_durable(9, 10s));
        last_start = stdfs::file_size(segment_files(dir.path).back());
        (*j)->append(make_record(10));
        ASSERT_TRUE((*j)->wait_durable(10, 10s));
        full_size = stdfs::file_size(segment_files(dir.path).back());
    }
    const std::string seg = segment_files(dir.path).back();
    std::string original;
    {
        std::ifstream in(seg, std::ios::binary);
        original.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_EQ(original.size(), full_size);
    for (std::uint64_t cut = last_start; cut < full_size; ++cut) {
        {
            std::ofstream out(seg, std::ios::binary | std::ios::trunc);
            out.write(original.data(), static_cast<std::streamsize>(cut));
        }
        auto j = Journal::open(dir.path);
        ASSERT_TRUE(j) << "cut at " << cut << ": " << j.error().message;
        EXPECT_EQ((*j)->replay_stats().records, 9u) << "cut at " << cut;
        EXPECT_EQ((*j)->replay_stats().torn_bytes, cut - last_start);
        EXPECT_EQ((*j)->last_seq(), 9u);
        EXPECT_EQ(stdfs::file_size(seg), last_start);  // the torn bytes are gone from disk
        // Appending continues right after the last good record.
        EXPECT_EQ((*j)->append(make_record(10)), 10u);
        ASSERT_TRUE((*j)->wait_durable(10, 10s));
        auto recs = read_all(**j);
        ASSERT_EQ(recs.size(), 10u);
        expect_same(recs.back().record, make_record(10));
    }
}

TEST(Journal, FlippedByteInTheTailIsTornButInAnOlderSegmentIsCorruption) {
    TempDir dir;
    {
        auto j = Journal::open(dir.path, {.segment_bytes = 2048});
        ASSERT_TRUE(j);
        ASSERT_TRUE(append_in_batches(**j, 100));
    }
    auto files = segment_files(dir.path);
    ASSERT_GE(files.size(), 3u);
    auto flip = [](const std::string& path, std::uint64_t at) {
        int fd = ::open(path.c_str(), O_RDWR);
        char c;
        ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(at)), 1);
        c ^= 0x10;
        ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(at)), 1);
        ::close(fd);
    };
    // Older segment: open() must refuse and name the file and offset.
    flip(files[1], 30);
    auto j = Journal::open(dir.path);
    ASSERT_FALSE(j);
    EXPECT_NE(j.error().message.find(files[1]), std::string::npos) << j.error().message;
    EXPECT_NE(j.error().message.find("offset 0"), std::string::npos) << j.error().message;
    flip(files[1], 30);  // repair
    ASSERT_TRUE(Journal::open(dir.path));
    // Flip inside the first record of the last segment: the log ends before it.
    flip(files.back(), 25);
    auto j2 = Journal::open(dir.path);
    ASSERT_TRUE(j2) << j2.error().message;
    EXPECT_GT((*j2)->replay_stats().torn_bytes, 0u);
    EXPECT_EQ((*j2)->last_seq(), std::stoull(stdfs::path(files.back()).filename().string().substr(8, 20)) - 1);
}

TEST(Journal, TrimDeletesOnlySegmentsBelowTheCursor) {
    TempDir dir;
    auto j = Journal::open(dir.path, {.segment_bytes = 2048});
    ASSERT_TRUE(j);
    ASSERT_TRUE(append_in_batches(**j, 200));
    const auto before = segment_files(dir.path).size();
    ASSERT_GT(before, 4u);
    (*j)->trim(100);
    const auto after = segment_files(dir.path).size();
    EXPECT_LT(after, before);
    EXPECT_LE((*j)->first_seq(), 101u);  // nothing unacked is gone
    auto recs = read_all(**j, 100);
    ASSERT_EQ(recs.size(), 100u);
    EXPECT_EQ(recs.front().seq, 101u);
    // Reading from before the trimmed point is an error, not silent loss.
    Journal::Reader old(**j, 0);
    DecodedRecord rec;
    auto r = old.next(rec);
    EXPECT_FALSE(r.has_value());
    // Trimming everything keeps the active segment, and seqs continue after reopen.
    (*j)->trim(200);
    EXPECT_EQ(segment_files(dir.path).size(), 1u);
    j->reset();
    auto j2 = Journal::open(dir.path);
    ASSERT_TRUE(j2);
    EXPECT_EQ((*j2)->append(make_record(1)), 201u);
}

// journal_max: the oldest segments go, acknowledged or not, until the size fits; the
// active segment always stays, and what is left is contiguous.
TEST(Journal, TrimToSizeDropsTheOldestSegmentsOnly) {
    TempDir dir;
    auto j = Journal::open(dir.path, {.segment_bytes = 2048});
    ASSERT_TRUE(j);
    ASSERT_TRUE(append_in_batches(**j, 300));
    const std::uint64_t total = (*j)->stored_bytes();
    ASSERT_GT(total, 8192u);
    EXPECT_EQ((*j)->trim_to_size(total), 0u);  // fits already
    const std::uint64_t dropped = (*j)->trim_to_size(6000);
    EXPECT_GT(dropped, 0u);
    EXPECT_LE((*j)->stored_bytes(), 6000u);
    EXPECT_EQ((*j)->first_seq(), dropped + 1);
    auto recs = read_all(**j, dropped);
    ASSERT_EQ(recs.size(), 300 - dropped);
    EXPECT_EQ(recs.back().seq, 300u);
    Journal::Reader behind(**j, dropped - 1);
    DecodedRecord rec;
    EXPECT_FALSE(behind.next(rec).has_value());  // a reader behind the cut is told, not skipped
    EXPECT_GT((*j)->trim_to_size(0), dropped);   // down to the active segment, never below
    EXPECT_EQ(segment_files(dir.path).size(), 1u);
}

// A batch far larger than a chunk (records appended while the flusher was busy) is written
// in chunks at record boundaries, across segment rotations, and replays whole and in order.
TEST(Journal, LargeBatchIsWrittenInChunksAndReplaysInOrder) {
    TempDir dir;
    {
        auto j = Journal::open(dir.path, {.segment_bytes = 300u << 10, .start_flusher = false});
        ASSERT_TRUE(j);
        for (std::uint64_t i = 1; i <= 20000; ++i) (*j)->append(make_record(i));
        (*j)->start_flusher();  // one batch of every record
        ASSERT_TRUE((*j)->wait_durable(20000, 30s));
        EXPECT_GT(segment_files(dir.path).size(), 2u) << "chunks let a batch span segments";
    }
    auto j = Journal::open(dir.path);
    ASSERT_TRUE(j) << j.error().message;
    auto recs = read_all(**j);
    ASSERT_EQ(recs.size(), 20000u);
    for (std::size_t i = 0; i < recs.size(); ++i) ASSERT_EQ(recs[i].seq, i + 1);
}

TEST(Journal, EmptyJournalStartsAfterMinNextSeq) {
    TempDir dir;
    ASSERT_TRUE(Journal::discard(dir.path));
    auto j = Journal::open(dir.path, {.min_next_seq = 5000});
    ASSERT_TRUE(j);
    EXPECT_EQ((*j)->append(make_record(1)), 5000u);
}

TEST(StateFiles, CursorAndCleanMarkerPersist) {
    TempDir dir;
    const std::string url = "rsync://u@127.0.0.1:9873/web";
    EXPECT_EQ(load_cursor(dir.path, url), 0u);
    ASSERT_TRUE(save_cursor(dir.path, url, 12345));
    EXPECT_EQ(load_cursor(dir.path, url), 12345u);
    EXPECT_EQ(load_cursor(dir.path, "rsync://other/web"), 0u);
    ASSERT_TRUE(save_cursor(dir.path, url, 12346));
    EXPECT_EQ(load_cursor(dir.path, url), 12346u);
    {
        std::ofstream out(dir.path + "/cursor-" + mirror_id(url));
        out << "syncfs-cursor 1 99999 0000000000000000\n";  // bad checksum
    }
    EXPECT_EQ(load_cursor(dir.path, url), 0u);
    EXPECT_FALSE(clean_marker_present(dir.path));
    ASSERT_TRUE(write_clean_marker(dir.path));
    EXPECT_TRUE(clean_marker_present(dir.path));
    ASSERT_TRUE(remove_clean_marker(dir.path));
    EXPECT_FALSE(clean_marker_present(dir.path));
}

// A child appends as fast as it can and reports every seq the journal called durable through
// a pipe; the parent SIGKILLs it at a random moment and replays: every reported seq is there.
TEST(Journal, EveryDurableRecordSurvivesSigkill) {
    for (int round = 0; round < 5; ++round) {
        TempDir dir;
        int pipefd[2];
        ASSERT_EQ(::pipe(pipefd), 0);
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(pipefd[0]);
            auto j = Journal::open(dir.path, {.segment_bytes = 64 * 1024});
            if (!j) ::_exit(2);
            for (std::uint64_t i = 1;; ++i) {
                (*j)->append(make_record(i));
                if (i % 97 == 0) {
                    (*j)->wait_durable(i, 10s);
                    std::uint64_t d = (*j)->durable_seq();
                    if (::write(pipefd[1], &d, sizeof d) != sizeof d) ::_exit(3);
                }
            }
        }
        ::close(pipefd[1]);
        // The kill comes at a random moment after the first durable report (on a loaded
        // machine the first fdatasync alone can take longer than the random delay).
        std::uint64_t reported = 0, d = 0;
        if (::read(pipefd[0], &d, sizeof d) == sizeof d) reported = d;
        std::this_thread::sleep_for(std::chrono::milliseconds(50 + 37 * round));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        ASSERT_TRUE(WIFSIGNALED(status));
        while (::read(pipefd[0], &d, sizeof d) == sizeof d) reported = std::max(reported, d);
        ::close(pipefd[0]);
        ASSERT_GT(reported, 0u);
        auto j = Journal::open(dir.path);
        ASSERT_TRUE(j) << j.error().message;
        EXPECT_GE((*j)->last_seq(), reported);
        auto recs = read_all(**j);
        ASSERT_GE(recs.size(), reported);
        for (std::uint64_t i = 0; i < reported; ++i) {
            ASSERT_EQ(recs[i].seq, i + 1);
            expect_same(recs[i].record, make_record(i + 1));
        }
    }
}

// Disk full under the journal (a small tmpfs): appends are buffered, the flusher reports the
// error and retries; once space is freed every record becomes durable exactly once, in order,
// with no bytes of the failed attempts left in the segment (replay would call them corrupt).
TEST(Journal, DiskFullIsRetriedAndLosesOrDuplicatesNothing) {
    TempDir dir;
    if (::mount("tmpfs", dir.path.c_str(), "tmpfs", 0, "size=256k") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
    }
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{dir.path};
    const std::string jdir = dir.path + "/j";
    ASSERT_EQ(::mkdir(jdir.c_str(), 0700), 0);
    auto j = Journal::open(jdir);
    ASSERT_TRUE(j) << j.error().message;
    ASSERT_EQ((*j)->append(make_record(1)), 1u);
    ASSERT_TRUE((*j)->wait_durable(1, 10s));

    // Fill the filesystem, leaving less than the next batch needs.
    const std::string filler = dir.path + "/filler";
    {
        std::ofstream f(filler, std::ios::binary);
        std::string block(4096, 'f');
        while (f.write(block.data(), static_cast<std::streamsize>(block.size()))) f.flush();
    }
    constexpr std::uint64_t kLast = 400;  // ~100 KiB of records: more than any free space left
    for (std::uint64_t i = 2; i <= kLast; ++i) ASSERT_EQ((*j)->append(make_record(i)), i);
    EXPECT_FALSE((*j)->wait_durable(kLast, 1500ms));
    EXPECT_LT((*j)->durable_seq(), kLast);
    EXPECT_NE((*j)->last_error().find("No space left on device"), std::string::npos) << (*j)->last_error();

    ASSERT_EQ(::unlink(filler.c_str()), 0);
    ASSERT_TRUE((*j)->wait_durable(kLast, 10s)) << (*j)->last_error();
    EXPECT_EQ((*j)->last_error(), "");
    auto check = [&](const Journal& journal) {
        auto recs = read_all(journal);
        ASSERT_EQ(recs.size(), kLast);
        for (std::uint64_t i = 0; i < kLast; ++i) {
            ASSERT_EQ(recs[i].seq, i + 1);
            expect_same(recs[i].record, make_record(i + 1));
        }
    };
    check(**j);
    j->reset();
    auto reopened = Journal::open(jdir);
    ASSERT_TRUE(reopened) << reopened.error().message;
    EXPECT_EQ((*reopened)->replay_stats().torn_bytes, 0u);
    check(**reopened);
}

}  // namespace
}  // namespace sfs::repl
