// Never silently miss a change: a kernel queue overflow (50k creates against the default
// 16384-event queue while the consumer is slow), a watch limit and errors each come out as
// an Overflow of the affected subtree, are counted in status and leave the watcher working.
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <cstring>
#include <thread>
#include <sys/stat.h>

#include <algorithm>

#include "tests/replicator/watch_test_util.h"

namespace sfs::repl::watch::test {
namespace {

class WatchOverflow : public ::testing::TestWithParam<Backend> {
protected:
    void start(WatchOptions options = {}) {
        options.backend = GetParam();
        UniqueFd fd = open_dir(src.path());
        auto w = Watcher::start(fd.get(), src.path(), std::move(options), sink);
        ASSERT_TRUE(w.has_value()) << w.error().message;
        watcher = std::move(*w);
    }
    void TearDown() override {
        sink.release();
        if (watcher) watcher->stop();
    }
    TmpfsDir src;
    RecordingSink sink;
    std::unique_ptr<Watcher> watcher;
};

TEST_P(WatchOverflow, BurstOf50kCreatesOverflowsIntoAReconcileOfTheTree) {
    ASSERT_EQ(::mkdir((src / "burst").c_str(), 0755), 0);
    start();
    // Hold the watcher thread in the sink (a slow consumer) while the burst lands, so the
    // real kernel queue overflows rather than being drained in time.
    sink.hold_next();
    write_file(src / "first");
    ASSERT_TRUE(sink.wait_held());
    const std::string dir = src / "burst";
    UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dfd.valid());
    for (int i = 0; i < 50000; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "f%05d", i);
        ASSERT_EQ(::mknodat(dfd.get(), name, S_IFREG | 0644, 0), 0) << name;
    }
    sink.release();
    ASSERT_TRUE(sink.wait_for(Kind::Overflow, "", 30s)) << "no Overflow after 50k creates";
    auto st = watcher->status();
    EXPECT_GE(st.overflows, 1u);
    EXPECT_TRUE(st.running);
    // Re-armed: a change after the overflow is reported as usual.
    write_file(src / "burst/after");
    EXPECT_TRUE(sink.wait_for(Kind::Created, "burst/after", 10s)) << "watcher did not recover";
    ASSERT_EQ(::mkdir((src / "newdir").c_str(), 0755), 0);
    write_file(src / "newdir/x");
    EXPECT_TRUE(sink.wait_for(Kind::Created, "newdir/x", 10s));
}

INSTANTIATE_TEST_SUITE_P(Backends, WatchOverflow, ::testing::Values(Backend::Inotify, Backend::Fanotify),
                         [](const auto& info) {
                             return std::string(info.param == Backend::Inotify ? "inotify" : "fanotify");
                         });

TEST(WatchLimit, UnwatchableSubtreesAreReportedAsOverflowAndKeptInStatus) {
    TempDir src;
    for (const char* d : {"a", "b", "c", "d"}) ASSERT_EQ(::mkdir((src / d).c_str(), 0755), 0);
    RecordingSink sink;
    WatchOptions options;
    options.backend = Backend::Inotify;
    options.max_inotify_watches = 3;  // root + two of the four directories
    UniqueFd fd = open_dir(src.path());
    auto w = Watcher::start(fd.get(), src.path(), options, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    auto& watcher = *w;
    auto overflowed = [&] {
        std::vector<std::string> out;
        for (const auto& c : sink.changes()) {
            if (c.kind == Kind::Overflow) out.push_back(c.path);
        }
        return out;
    };
    // Delivered through the echo delay of inotify mode: wait for them.
    eventually([&] { return overflowed().size() >= 2; });
    ASSERT_EQ(overflowed().size(), 2u) << sink.dump();
    for (const auto& p : overflowed()) EXPECT_NE(p, "") << "only the unwatched subtree is to be reconciled";
    auto st = watcher->status();
    EXPECT_EQ(st.watched_dirs, 3u);
    EXPECT_EQ(st.overflows, 2u);
    EXPECT_GE(st.errors, 2u);
    EXPECT_NE(st.last_error.find("watch limit"), std::string::npos) << st.last_error;
    // A new directory in a watched one, past the limit: its creation is reported and its
    // subtree overflowed.
    auto unwatched = overflowed();
    std::string parent;
    for (const char* d : {"a", "b", "c", "d"}) {
        if (std::find(unwatched.begin(), unwatched.end(), d) == unwatched.end()) parent = d;
    }
    ASSERT_FALSE(parent.empty());
    ASSERT_EQ(::mkdir((src / (parent + "/new")).c_str(), 0755), 0);
    EXPECT_TRUE(sink.wait_for(Kind::DirCreated, parent + "/new")) << sink.dump();
    EXPECT_TRUE(sink.wait_for(Kind::Overflow, parent + "/new")) << sink.dump();
    EXPECT_EQ(watcher->status().overflows, 3u);
    watcher->stop();
}

TEST(WatchLimit, UnwatchedSubtreesAreRetriedAndReconciledPeriodically) {
    TempDir src;
    for (const char* d : {"a", "b"}) ASSERT_EQ(::mkdir((src / d).c_str(), 0755), 0);
    RecordingSink sink;
    WatchOptions options;
    options.backend = Backend::Inotify;
    options.max_inotify_watches = 2;  // root and one of a, b
    options.rewatch_interval = 200ms;
    UniqueFd fd = open_dir(src.path());
    auto w = Watcher::start(fd.get(), src.path(), options, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    auto& watcher = *w;
    ASSERT_TRUE(sink.wait_for([](const OutsideChange& c) { return c.kind == Kind::Overflow; })) << sink.dump();
    std::string unwatched, watched;
    for (const auto& c : sink.changes()) {
        if (c.kind == Kind::Overflow) unwatched = c.path;
    }
    ASSERT_TRUE(unwatched == "a" || unwatched == "b") << sink.dump();
    watched = unwatched == "a" ? "b" : "a";
    // Still over the limit: the subtree is handed out for reconcile again and again.
    auto overflow_count = [&] {
        auto all = sink.changes();
        return std::count_if(all.begin(), all.end(),
                             [&](const OutsideChange& c) { return c.kind == Kind::Overflow && c.path == unwatched; });
    };
    eventually([&] { return overflow_count() >= 3; }, 120s);
    EXPECT_GE(overflow_count(), 3) << sink.dump();
    // A watch is freed: the next retry watches the subtree, and its changes are reported.
    ASSERT_EQ(::rmdir((src / watched).c_str()), 0);
    ASSERT_TRUE(sink.wait_for(Kind::Deleted, watched)) << sink.dump();
    const bool rewatched = eventually([&] { return watcher->status().watched_dirs == 2; }, 120s);
    ASSERT_TRUE(rewatched) << sink.dump();
    write_file(src / (unwatched + "/now-seen"));
    EXPECT_TRUE(sink.wait_for(Kind::Created, unwatched + "/now-seen")) << sink.dump();
    watcher->stop();
}

// The kernel's own limit: in a child process with a user namespace of its own whose
// max_inotify_watches is 3 (a per-namespace limit, so nothing else on the host is affected),
// inotify_add_watch fails with ENOSPC like it does at fs.inotify.max_user_watches.
TEST(WatchLimit, KernelEnospcIsReportedAsOverflowOfTheSubtree) {
    TempDir src;
    for (const char* d : {"a", "b", "c", "d"}) ASSERT_EQ(::mkdir((src / d).c_str(), 0755), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        // Exit codes: 10+ setup impossible (skip), 1-9 assertion failed, 0 ok.
        if (::unshare(CLONE_NEWUSER) != 0) ::_exit(10);
        auto put = [](const char* file, const char* text) {
            int fd = ::open(file, O_WRONLY | O_CLOEXEC);
            bool ok = fd >= 0 && ::write(fd, text, std::strlen(text)) == static_cast<ssize_t>(std::strlen(text));
            if (fd >= 0) ::close(fd);
            return ok;
        };
        if (!put("/proc/self/uid_map", "0 0 1") || !put("/proc/sys/user/max_inotify_watches", "3")) ::_exit(11);
        RecordingSink sink;
        WatchOptions options;
        options.backend = Backend::Inotify;
        UniqueFd fd = open_dir(src.path());
        auto w = Watcher::start(fd.get(), src.path(), options, sink);
        if (!w) ::_exit(1);
        int overflows = 0;
        eventually([&] {
            overflows = 0;
            for (const auto& c : sink.changes()) overflows += c.kind == Kind::Overflow && !c.path.empty();
            return overflows >= 2;
        });
        auto st = (*w)->status();
        (*w)->stop();
        if (overflows != 2) ::_exit(2);
        if (st.watched_dirs != 3) ::_exit(3);
        if (st.last_error.find("max_user_watches") == std::string::npos) ::_exit(4);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    if (WEXITSTATUS(status) >= 10) GTEST_SKIP() << "no user namespace with its own inotify limit here";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: start failed, 2: not two subtree overflows, 3: watch count, 4: error text";
}

// A filesystem that cannot resolve file handles (ramfs) must not get a fanotify watcher
// that later fails on every event: Auto picks inotify there, and it works.
TEST(WatchFallback, AutoUsesInotifyWhereFanotifyCannotResolveHandles) {
    TempDir mnt;
    if (::mount("syncfs-watch-test", mnt.path().c_str(), "ramfs", 0, nullptr) != 0) {
        GTEST_SKIP() << "cannot mount ramfs: " << std::strerror(errno);
    }
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{mnt.path()};
    RecordingSink sink;
    UniqueFd fd = open_dir(mnt.path());
    auto w = Watcher::start(fd.get(), mnt.path(), WatchOptions{}, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    write_file(mnt / "f");
    EXPECT_TRUE(sink.wait_for(Kind::Created, "f")) << (*w)->mode() << "\n" << sink.dump();
    EXPECT_EQ((*w)->mode(), "inotify");
    (*w)->stop();
}

TEST(WatchFallback, AutoPrefersFanotifyAsRoot) {
    if (::geteuid() != 0) GTEST_SKIP() << "fanotify needs root";
    TempDir src;
    RecordingSink sink;
    UniqueFd fd = open_dir(src.path());
    auto w = Watcher::start(fd.get(), src.path(), WatchOptions{}, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    EXPECT_EQ((*w)->mode(), "fanotify");
    EXPECT_FALSE((*w)->needs_echo_hints());
}

}  // namespace
}  // namespace sfs::repl::watch::test
