// End to end: changes made directly to SOURCE (outside the mount) reach the mirror, with a
// real mount, a real syncfsd and `syncfsctl wait` (docs/watcher.md). Each scenario runs with
// the watcher in auto mode (fanotify as root) and forced to inotify.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <tuple>

#include "tests/replicator/e2e_harness.h"
#include "tests/support/eventually.h"

namespace sfs::e2e {
namespace {

using testsupport::eventually;

class E2eWatch : public ::testing::TestWithParam<std::string> {
protected:
    std::string opts() const { return "watch=" + GetParam(); }
};

TEST_P(E2eWatch, DirectWritesCreatesRenamesDeletesChmodConverge) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, opts());
    ASSERT_EQ(sh("mkdir -p " + env.mnt + "/d1/sub " + env.mnt + "/d2 " + env.mnt + "/gone/deep && cd " + env.mnt +
                 " && for i in 1 2 3 4 5; do echo content$i > d1/f$i; done && echo x > gone/deep/y && "
                 "head -c 200000 /dev/urandom > big")
                  .status,
              0);
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(env.diff(), "");
    const std::string mode = status_field(mount, "mode");
    if (GetParam() == "inotify") {
        EXPECT_EQ(mode, "inotify");
    }
    EXPECT_TRUE(mode == "fanotify" || mode == "inotify") << mount.status_json();

    // No pause after the writes through the mount: in inotify mode an outside change right
    // after an own one is told apart by the path's state (docs/watcher.md).
    // Everything below happens in SOURCE itself, not through the mount.
    const std::string s = env.src;
    stdfs::create_directories(env.root + "/outside/tree");
    write_file(env.root + "/outside/in.txt", "moved in\n");
    write_file(env.root + "/outside/tree/t.txt", "tree moved in\n");
    ASSERT_EQ(sh("cd " + s +
                 " && echo changed >> d1/f1"                           // append
                 " && dd if=/dev/urandom of=big bs=4k count=2 seek=10 conv=notrunc status=none"  // write in place
                 " && echo new > d2/new.txt && ln -s ../d1/f2 d2/link && ln d1/f3 d2/hard"  // creates
                 " && chmod 600 d1/f4 && chmod 700 d1/sub"              // chmod
                 " && mv d1/f5 d1/f5.renamed && mv d1/f2 d2/f2.across"  // renames within/across
                 " && mv " + env.root + "/outside/in.txt d1/ && mv " + env.root + "/outside/tree d2/"  // moved in
                 " && mv d2/new.txt " + env.root + "/outside/out.txt"   // moved out
                 " && rm -r gone && rm d1/f3"                            // deletes
                 " && mkdir -p n/a/b/c && for i in $(seq 20); do echo $i > n/a/b/c/f$i; echo $i > n/a/g$i; done")
                  .status,
              0);
    ASSERT_EQ(mount.wait(50).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.status_json() << mount.log();
    EXPECT_NE(status_field(mount, "changes_reported"), "0");
}

// The kernel queue holds 16384 events. While the hold file exists the watcher does not read
// it (fault injection, docs/watcher.md), so 50k creates overflow it for certain: the status
// and the log must show the overflow and the whole-tree fallback, and nothing is missed.
TEST_P(E2eWatch, BurstOf50kDirectCreatesOverflowsTheQueueAndConverges) {
    Env env;
    Syncfsd daemon(env);
    const std::string hold = env.root + "/hold";
    // Made before the mount, so inotify watches it from the start (a directory made while
    // the reader is held would get its watch, and its events, only after the hold).
    const std::string dir = env.src + "/burst";
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    write_file(hold, "");
    ::setenv("SYNCFS_TEST_WATCH_HOLD", hold.c_str(), 1);
    Mount mount(env, opts());
    ::unsetenv("SYNCFS_TEST_WATCH_HOLD");
    // (No `syncfsctl wait` while the reader is held: it waits for the reader to catch up.)
    EXPECT_EQ(status_field(mount, "overflows"), "0");
    for (int i = 0; i < 50000; ++i) {
        const std::string p = dir + "/f" + std::to_string(i);
        int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << p;
        ::close(fd);
    }
    ASSERT_EQ(::unlink(hold.c_str()), 0);
    ASSERT_EQ(mount.wait(120).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "");
    const std::string status = mount.status_json();
    EXPECT_NE(status_field(mount, "overflows"), "0") << status;
    EXPECT_NE(status_field(mount, "fallback_reconciles"), "0") << status;
    EXPECT_EQ(status_field(mount, "last_fallback"), "/") << status;
    const std::string log = mount.log();
    EXPECT_NE(log.find("event queue overflow"), std::string::npos) << log.substr(0, 4000);
    EXPECT_NE(log.find("events lost for 'SOURCE': verifying that subtree"), std::string::npos);
}

// Issue 6: a directory renamed directly in SOURCE reaches the mirror as one rename.
TEST_P(E2eWatch, DirectoryRenamedInSourceIsSentAsOneRename) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, opts());
    ASSERT_EQ(::mkdir((env.mnt + "/a").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((env.mnt + "/a/big").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((env.mnt + "/b").c_str(), 0755), 0);
    std::string kib(1024, 'x');
    for (int i = 0; i < 1000; ++i) {
        kib[0] = static_cast<char>('a' + i % 26);
        write_file(env.mnt + "/a/big/f" + std::to_string(i), kib);
    }
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(env.diff(), "");
    const std::uint64_t before = mount.bytes_sent();
    ASSERT_EQ(::rename((env.src + "/a/big").c_str(), (env.src + "/b/moved").c_str()), 0);
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    const std::uint64_t sent = mount.bytes_sent() - before;
    const std::string status = mount.status_json();
    EXPECT_EQ(env.diff(), "");
    EXPECT_LT(sent, 64u * 1024) << status;  // the files hold 1000 KiB
    EXPECT_EQ(status_field(mount, "outside_renames"), "1") << status;
}

TEST_P(E2eWatch, RenamesInOutAndAcrossDirectoriesConverge) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, opts());
    ASSERT_EQ(sh("cd " + env.mnt + " && mkdir -p x/sub/deep y && echo 1 > x/f1 && echo 2 > x/f2 && "
                 "echo old > y/target && echo s > x/sub/s1 && echo d > x/sub/deep/d1")
                  .status,
              0);
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(env.diff(), "");
    const std::string out = env.root + "/outside";
    stdfs::create_directories(out + "/newdir/inner");
    write_file(out + "/newdir/n1", "n1\n");
    write_file(out + "/newdir/inner/n2", "n2\n");
    ASSERT_EQ(sh("cd " + env.src +
                 " && mv x/f1 y/f1"                                    // file across directories
                 " && mv x/sub y/sub2"                                 // directory across directories
                 " && echo new > x/.tmp && mv x/.tmp y/target"          // atomic replace of an existing file
                 " && mv " + out + "/newdir x/in"                      // directory moved in
                 " && mv y/sub2/s1 " + out + "/s1.out"                  // file moved out
                 " && mv y/sub2/deep " + out + "/deep.out"              // directory moved out
                 " && mv x x2 && echo more >> x2/f2"                    // renamed, then written under its new name
                 " && mkdir -p t/a/b && mv t/a t/c")                    // a new directory renamed at once
                  .status,
              0);
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.status_json();
}

// A watcher whose reader thread dies is restarted with backoff, the death is shown in
// status, and the tree is verified for what was changed while no watcher ran.
TEST_P(E2eWatch, DeadWatcherIsRestartedAndTheTreeVerified) {
    Env env;
    Syncfsd daemon(env);
    const std::string failf = env.root + "/fail";
    ::setenv("SYNCFS_TEST_WATCH_FAIL", failf.c_str(), 1);
    Mount mount(env, opts());
    ::unsetenv("SYNCFS_TEST_WATCH_FAIL");
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    write_file(failf, "");
    std::string running;
    eventually([&] { return (running = status_field(mount, "running")) == "false"; });
    EXPECT_EQ(running, "false") << mount.status_json();
    write_file(env.src + "/while_dead", "made while no watcher ran\n");  // restart backoff: 1 s
    std::string restarts;
    eventually([&] { return (restarts = status_field(mount, "restarts")) == "1"; });
    const std::string status = mount.status_json();
    EXPECT_EQ(restarts, "1") << status;
    EXPECT_EQ(status_field(mount, "running"), "true") << status;
    EXPECT_NE(status_field(mount, "last_failure").find("injected fault"), std::string::npos) << status;
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "");
    write_file(env.src + "/after_restart", "seen by the new watcher\n");
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(mount.log().find("watcher: restarted"), std::string::npos);
}

TEST_P(E2eWatch, ReaderThroughTheMountSeesADirectWriteAtOnce) {
    Env env;
    Syncfsd daemon(env);
    // Long kernel cache lifetimes: only the watcher's invalidation can make the new data show.
    Mount mount(env, opts() + ",timeout=3600");
    write_file(env.mnt + "/f", "old content 1\n");
    ASSERT_EQ(read_file(env.mnt + "/f"), "old content 1\n");
    ASSERT_EQ(mount.wait().status, 0);
    // No pause after the writes through the mount: in inotify mode an outside change right
    // after an own one is told apart by the path's state (docs/watcher.md).
    write_file(env.src + "/f", "NEW CONTENT 2\n");  // same size: attributes alone would not tell
    write_file(env.src + "/g", "appeared\n");
    std::string seen;
    eventually([&] { return (seen = read_file(env.mnt + "/f")) == "NEW CONTENT 2\n"; });
    EXPECT_EQ(seen, "NEW CONTENT 2\n");
    write_file(env.src + "/f", "longer new content 3\n");
    eventually([&] { return (seen = read_file(env.mnt + "/f")) == "longer new content 3\n"; });
    EXPECT_EQ(seen, "longer new content 3\n");
    EXPECT_EQ(read_file(env.mnt + "/g"), "appeared\n");
    ASSERT_EQ(mount.wait().status, 0);
    EXPECT_EQ(env.diff(), "");
}

// Issue 6, gap 2: events were lost (queue overflow) while files the kernel caches were
// changed directly in SOURCE. After the overflow every node the kernel knows is invalidated,
// not only the root: a reader through a timeout=3600 mount sees the new data, and a name it
// had looked up in vain (a cached negative entry) once it exists.
TEST_P(E2eWatch, ReaderThroughTheMountSeesWritesMadeWhileEventsWereLost) {
    Env env;
    Syncfsd daemon(env);
    const std::string hold = env.root + "/hold";  // made later: the reader runs until then
    ASSERT_EQ(::mkdir((env.src + "/burst").c_str(), 0755), 0);
    ASSERT_EQ(::mkdir((env.src + "/d").c_str(), 0755), 0);
    ::setenv("SYNCFS_TEST_WATCH_HOLD", hold.c_str(), 1);
    Mount mount(env, opts() + ",timeout=3600");
    ::unsetenv("SYNCFS_TEST_WATCH_HOLD");
    write_file(env.mnt + "/f", "old content 1\n");
    write_file(env.mnt + "/d/g", "old g\n");
    ASSERT_EQ(read_file(env.mnt + "/f"), "old content 1\n");
    ASSERT_EQ(read_file(env.mnt + "/d/g"), "old g\n");
    struct stat st;
    ASSERT_NE(::stat((env.mnt + "/d/h").c_str(), &st), 0);  // cached as absent for an hour
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    write_file(hold, "");
    std::this_thread::sleep_for(100ms);  // the reader polls the hold file every 20 ms
    for (int i = 0; i < 20000; ++i) {  // 40k events fill the kernel queue (16384): later ones are lost
        const std::string p = env.src + "/burst/f" + std::to_string(i);
        int fd = ::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << p;
        ::close(fd);
    }
    write_file(env.src + "/f", "NEW CONTENT 2\n");  // same sizes: attributes alone would not tell
    write_file(env.src + "/d/g", "new g\n");
    write_file(env.src + "/d/h", "appeared\n");
    // Nothing told the kernel yet: it still serves the old data (unless it dropped its cache
    // by itself, e.g. under memory pressure -- then this test proves less, and says so).
    const bool stale = read_file(env.mnt + "/f") == "old content 1\n" && read_file(env.mnt + "/d/g") == "old g\n";
    if (!stale) std::fprintf(stderr, "note: the kernel dropped the mount's cache by itself\n");
    ASSERT_EQ(::unlink(hold.c_str()), 0);
    ASSERT_EQ(mount.wait(120).status, 0) << mount.log();
    EXPECT_NE(status_field(mount, "overflows"), "0") << mount.status_json();
    EXPECT_EQ(read_file(env.mnt + "/f"), "NEW CONTENT 2\n");
    EXPECT_EQ(read_file(env.mnt + "/d/g"), "new g\n");
    EXPECT_EQ(read_file(env.mnt + "/d/h"), "appeared\n");
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(mount.log().find("events for 'SOURCE' were lost: dropped"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Modes, E2eWatch, ::testing::Values("auto", "inotify"));

// Issue 6, gap 1: an outside change made right after a change through the mount to the same
// path (well inside inotify's 2 s echo window) reaches the mirror. inotify cannot tell who
// made a change; an event is taken for syncfs's own only while the path is in the state
// syncfs's own change left (docs/watcher.md, "Echo suppression"). Also run in auto mode
// (fanotify): a mirror that sends the mount's write after the outside change stamps SOURCE's
// size and mtime on it, and the outside change's verification must still compare content.
struct EchoCase {
    const char* name;
    void (*outside)(const std::string& src);  // right after the mount's write of f
};

void pwrite_at(const std::string& path, off_t off, const std::string& data, int flags = 0) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), off), static_cast<ssize_t>(data.size())) << path;
    ::close(fd);
}

const EchoCase kEchoCases[] = {
    {"longer", [](const std::string& s) { pwrite_at(s + "/f", 0, "written directly, longer than the mount's write\n", O_TRUNC); }},
    {"same_size", [](const std::string& s) { pwrite_at(s + "/f", 0, std::string(100, 'D'), 0); }},
    {"in_place_elsewhere", [](const std::string& s) { pwrite_at(s + "/f", 50000, "changed outside the mount", 0); }},
    {"chmod", [](const std::string& s) { ASSERT_EQ(::chmod((s + "/f").c_str(), 0600), 0); }},
    {"truncate", [](const std::string& s) { ASSERT_EQ(::truncate((s + "/f").c_str(), 10), 0); }},
    {"rename", [](const std::string& s) { ASSERT_EQ(::rename((s + "/f").c_str(), (s + "/g").c_str()), 0); }},
    {"unlink", [](const std::string& s) { ASSERT_EQ(::unlink((s + "/f").c_str()), 0); }},
};

class E2eWatchEcho : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(E2eWatchEcho, OutsideChangeRightAfterAWriteThroughTheMountReachesTheMirror) {
    const auto& [mode, index] = GetParam();
    const EchoCase& c = kEchoCases[index];
    SCOPED_TRACE(c.name);
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "watch=" + mode);
    write_file(env.mnt + "/f", std::string(100000, 'a'));
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(env.diff(), "");
    pwrite_at(env.mnt + "/f", 0, std::string(100, 'm'));  // through the mount
    c.outside(env.src);                                     // at once, directly in SOURCE
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.status_json();
}

// The mount's write reaches the mirror only after an outside change to the same file (the
// mirror was down): the sender reads the written range from SOURCE then and stamps SOURCE's
// size and mtime -- which include the outside change -- on the mirror. The outside change's
// Verify must not take the copy for equal by size and mtime: it compares content.
TEST(E2eWatchStamp, OutsideChangeBehindAWriteSentLaterIsFoundByContent) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "watch=auto");
    write_file(env.mnt + "/f", std::string(100000, 'a'));
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    daemon.kill9();
    pwrite_at(env.mnt + "/f", 0, std::string(100, 'm'));             // through the mount
    pwrite_at(env.src + "/f", 50000, "changed outside the mount");   // directly, same size
    std::string records;
    eventually([&] { return !(records = status_field(mount, "records")).empty() && records != "0"; });
    ASSERT_NE(records, "0") << mount.status_json();
    daemon.start();
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.status_json();
}

INSTANTIATE_TEST_SUITE_P(Cases, E2eWatchEcho,
                         ::testing::Combine(::testing::Values("auto", "inotify"),
                                            ::testing::Range(0, static_cast<int>(std::size(kEchoCases)))),
                         [](const auto& info) {
                             return std::get<0>(info.param) + "_" + kEchoCases[std::get<1>(info.param)].name;
                         });

// A file with three hard links in three directories is written outside the mount through
// one name: the verification of that name finds the other two in SOURCE and links them to
// the new copy on the mirror, so the mirror keeps one file with three names -- by itself,
// without a whole-tree reconcile (that used to be the only repair, and until it ran the
// other names kept the old content as separate files).
TEST(E2eWatchLinks, OutsideWriteToAHardLinkedFileKeepsItsLinksWithoutAWholeTreePass) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "watch=auto");
    ASSERT_EQ(sh("cd " + env.mnt + " && mkdir -p d1 d2/deep && echo old > d1/a && ln d1/a d2/deep/b && ln d1/a c")
                  .status,
              0);
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(env.diff(), "");
    const auto passes = [&] {
        const std::string log = mount.log();
        std::size_t n = 0;
        for (auto p = log.find("reconcile: done"); p != std::string::npos; p = log.find("reconcile: done", p + 1)) ++n;
        return n;
    };
    const std::size_t before = passes();
    write_file(env.src + "/d2/deep/b", "new content, written beside the mount\n");  // in place: same inode
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.log();
    struct stat a, b, c;
    ASSERT_EQ(::lstat((env.mirror + "/d1/a").c_str(), &a), 0);
    ASSERT_EQ(::lstat((env.mirror + "/d2/deep/b").c_str(), &b), 0);
    ASSERT_EQ(::lstat((env.mirror + "/c").c_str(), &c), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_EQ(a.st_ino, c.st_ino);
    EXPECT_EQ(read_file(env.mirror + "/c"), "new content, written beside the mount\n");
    EXPECT_EQ(passes(), before) << mount.log();
    EXPECT_NE(status_field(mount, "outside_verified"), "0") << mount.status_json();
}

// Hard links of symlinks (ln -P) are hard links too, as rsync -H keeps them: a pair made
// before the mount (the initial whole-tree reconcile) and a pair made beside the mount
// (verified per path) both end up as one node with two names on the mirror.
TEST(E2eWatchLinks, HardLinkedSymlinksStayLinkedInBothReconcilePasses) {
    Env env;
    ASSERT_EQ(sh("cd " + env.src + " && mkdir d && ln -s some/target d/s1 && ln -P d/s1 s2").status, 0);
    Syncfsd daemon(env);
    Mount mount(env, "watch=auto");
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    ASSERT_EQ(sh("cd " + env.src + " && ln -s other/target d/t1 && ln -P d/t1 t2").status, 0);
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.log();
    struct stat a, b;
    ASSERT_EQ(::lstat((env.mirror + "/d/s1").c_str(), &a), 0);
    ASSERT_EQ(::lstat((env.mirror + "/s2").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    ASSERT_EQ(::lstat((env.mirror + "/d/t1").c_str(), &a), 0);
    ASSERT_EQ(::lstat((env.mirror + "/t2").c_str(), &b), 0);
    EXPECT_EQ(a.st_ino, b.st_ino);
    EXPECT_TRUE(S_ISLNK(b.st_mode));
}

// Issue 6: a write through the mount costs no extra transfer with the watcher on.
std::uint64_t bytes_for_4k_write(const std::string& watch, std::string& status) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "watch=" + watch);
    EXPECT_EQ(sh("truncate -s 1G " + env.mnt + "/big").status, 0);
    EXPECT_EQ(mount.wait().status, 0);
    const std::uint64_t before = mount.bytes_sent();
    EXPECT_EQ(sh("dd if=/dev/urandom of=" + env.mnt + "/big bs=4k count=1 seek=100000 conv=notrunc status=none").status,
              0);
    EXPECT_EQ(mount.wait().status, 0);
    const std::uint64_t sent = mount.bytes_sent() - before;
    EXPECT_EQ(sh("cmp " + env.src + "/big " + env.mirror + "/big").status, 0);
    status = mount.status_json();
    return sent;
}

TEST(E2eWatchBytes, FourKiBWriteThroughTheMountSendsTheSameWithWatcherOnAndOff) {
    std::string off_status, auto_status, inotify_status;
    const std::uint64_t off = bytes_for_4k_write("off", off_status);
    const std::uint64_t on = bytes_for_4k_write("auto", auto_status);
    const std::uint64_t ino = bytes_for_4k_write("inotify", inotify_status);
    EXPECT_LT(off, 64u * 1024);
    // Equal up to one small attribute message: the kernel's writeback of a dirty inode
    // (its time flush, a Setattr of the mtime) runs on the flusher's schedule and may fall
    // inside one run's window and not another's. A watcher echo that cost a transfer would
    // be a Verify listing or a delta: kilobytes.
    const auto near = [&](std::uint64_t x) { return (x > off ? x - off : off - x) <= 256; };
    EXPECT_TRUE(near(on)) << on << " vs " << off << "\n" << auto_status;
    EXPECT_TRUE(near(ino)) << ino << " vs " << off << "\n" << inotify_status;
}

// Watch limit reached (inotify): the unwatched subtree is verified instead (at start and
// every rewatch interval), logged and shown in status; nothing in it is missed.
TEST(E2eWatchLimit, UnwatchedSubtreeIsReconciledAndShownInStatus) {
    Env env;
    Syncfsd daemon(env);
    stdfs::create_directories(env.src + "/u/v");  // pre-order: "" and u get the 2 watches
    ::setenv("SYNCFS_TEST_WATCH_MAX_INOTIFY", "2", 1);
    ::setenv("SYNCFS_TEST_WATCH_REWATCH_MS", "500", 1);
    Mount mount(env, "watch=inotify");
    ::unsetenv("SYNCFS_TEST_WATCH_MAX_INOTIFY");
    ::unsetenv("SYNCFS_TEST_WATCH_REWATCH_MS");
    ASSERT_EQ(mount.wait().status, 0) << mount.log();
    const std::string status = mount.status_json();
    EXPECT_EQ(status_field(mount, "watched_dirs"), "2") << status;
    EXPECT_NE(status_field(mount, "last_error").find("watch limit"), std::string::npos) << status;
    EXPECT_NE(status_field(mount, "fallback_reconciles"), "0") << status;
    EXPECT_EQ(status_field(mount, "last_fallback"), "u/v") << status;
    EXPECT_NE(mount.log().find("events lost for 'u/v': verifying that subtree"), std::string::npos);
    write_file(env.src + "/u/v/unwatched", "found by the subtree verification\n");
    write_file(env.src + "/u/watched", "found by its event\n");
    // The unwatched subtree is verified every 500 ms: it converges without any event.
    std::string diff = "not run";
    for (int i = 0; i < 50 && !diff.empty(); ++i) {
        ASSERT_EQ(mount.wait(30).status, 0) << mount.log();
        diff = env.diff();
        if (!diff.empty()) std::this_thread::sleep_for(200ms);
    }
    EXPECT_EQ(diff, "") << mount.status_json();
}

// Outside changes are journaled: with the mirror down, a change the watcher saw survives an
// unmount and is sent by the next mount from its journal (here without a watcher at all).
TEST(E2eWatchJournal, OutsideChangeIsJournaledAndReplayedAfterRestart) {
    Env env;
    Syncfsd daemon(env);
    {
        Mount mount(env, "watch=auto");
        write_file(env.mnt + "/f", std::string(100000, 'a'));
        ASSERT_EQ(mount.wait().status, 0) << mount.log();
        daemon.kill9();
        {
            std::fstream f(env.src + "/f", std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(50000);
            f << "changed outside the mount";
        }
        std::string records;
        eventually([&] { return !(records = status_field(mount, "records")).empty() && records != "0"; });
        ASSERT_NE(records, "0") << mount.status_json();
        mount.unmount();  // clean stop with the mirror down: the record stays in the journal
    }
    daemon.start();
    Mount again(env, "watch=off");
    ASSERT_EQ(again.wait(60).status, 0) << again.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(status_field(again, "outside_verified"), "0") << again.status_json();
}

}  // namespace
}  // namespace sfs::e2e
