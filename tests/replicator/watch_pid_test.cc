// Telling syncfs's own changes from outside ones.
//  - fanotify: events carry the writer's pid; those of options.ignore_pid are dropped
//    exactly. Here ignore_pid is a forked writer's pid: its writes must vanish while another
//    process's writes in the same directory, at the same time, are reported.
//  - inotify: no pid; expect_own_change() announcements suppress events on a path for
//    echo_ttl, and nothing else.
#include <sys/wait.h>

#include <thread>

#include "tests/replicator/watch_test_util.h"

namespace sfs::repl::watch::test {
namespace {

// Forks a process that waits for a byte on a pipe, then creates and appends to `count`
// files named prefix<i> in `dir`, then exits.
class Writer {
public:
    Writer(const std::string& dir, const std::string& prefix, int count) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
        pid_ = ::fork();
        if (pid_ < 0) std::abort();
        if (pid_ == 0) {
            ::close(fds[1]);
            char c;
            if (::read(fds[0], &c, 1) != 1) ::_exit(3);
            for (int i = 0; i < count; ++i) {
                std::string p = dir + "/" + prefix + std::to_string(i);
                int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0 || ::write(fd, "abc", 3) != 3) ::_exit(1);
                ::close(fd);
                if (::chmod(p.c_str(), 0600) != 0) ::_exit(2);
            }
            ::_exit(0);
        }
        ::close(fds[0]);
        go_ = UniqueFd(fds[1]);
    }
    ~Writer() {
        if (pid_ > 0 && !waited_) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    pid_t pid() const { return pid_; }
    void go() { ASSERT_EQ(::write(go_.get(), "g", 1), 1); }
    void wait_ok() {
        int status = 0;
        ASSERT_EQ(::waitpid(pid_, &status, 0), pid_);
        waited_ = true;
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }

private:
    pid_t pid_ = -1;
    UniqueFd go_;
    bool waited_ = false;
};

TEST(WatchPid, FanotifyDropsExactlyTheIgnoredProcesssChanges) {
    if (::geteuid() != 0) GTEST_SKIP() << "fanotify needs root";
    TempDir src;
    RecordingSink sink;
    Writer own(src.path(), "own", 200);     // plays syncfs's FUSE threads
    Writer other(src.path(), "other", 200); // an outside process
    WatchOptions options;
    options.backend = Backend::Fanotify;
    options.ignore_pid = own.pid();
    UniqueFd fd = open_dir(src.path());
    auto w = Watcher::start(fd.get(), src.path(), options, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    own.go();
    other.go();
    own.wait_ok();
    other.wait_ok();
    write_file(src / ".marker");  // from the test process: reported, and last
    ASSERT_TRUE(sink.wait_for(Kind::Created, ".marker")) << sink.dump();
    for (int i = 0; i < 200; ++i) {
        std::string p = "other" + std::to_string(i);
        EXPECT_TRUE(sink.wait_for(Kind::Created, p, 0s)) << p;
        EXPECT_TRUE(sink.wait_for(Kind::Attrib, p, 0s)) << p;
    }
    for (const auto& c : sink.changes()) EXPECT_FALSE(c.path.starts_with("own")) << describe(c);
    auto st = (*w)->status();
    EXPECT_GE(st.own_dropped, 200u);  // at least one (possibly merged) event per file
    (*w)->stop();
}

TEST(WatchPid, InotifyEchoHintsSuppressOnlyTheAnnouncedPathForAWhile) {
    TempDir src;
    RecordingSink sink;
    WatchOptions options;
    options.backend = Backend::Inotify;
    options.echo_ttl = std::chrono::milliseconds(500);
    UniqueFd fd = open_dir(src.path());
    auto w = Watcher::start(fd.get(), src.path(), options, sink);
    ASSERT_TRUE(w.has_value()) << w.error().message;
    auto& watcher = *w;
    ASSERT_TRUE(watcher->needs_echo_hints());
    watcher->expect_own_change("mine");
    write_file(src / "mine");
    // Announced just after the syscall, as ChangeSink::on_change would: still an echo.
    write_file(src / "mine-after");
    watcher->expect_own_change("mine-after");
    write_file(src / "theirs");
    ASSERT_TRUE(sink.wait_for(Kind::Created, "theirs")) << sink.dump();
    write_file(src / ".marker");
    ASSERT_TRUE(sink.wait_for(Kind::Created, ".marker")) << sink.dump();
    EXPECT_FALSE(sink.seen("mine")) << sink.dump();
    EXPECT_FALSE(sink.seen("mine-after")) << sink.dump();
    EXPECT_GE(watcher->status().own_dropped, 2u);
    // After the TTL the same path is an outside change again.
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    append_file(src / "mine", "outside");
    EXPECT_TRUE(sink.wait_for(Kind::Modified, "mine")) << sink.dump();
    watcher->stop();
}

}  // namespace
}  // namespace sfs::repl::watch::test
