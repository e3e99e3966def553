// syncfsd module options that only show once a transfer runs: read only / write only
// refusals, uid/gid and chroot, push and pull through the daemon with the real rsync.
//
// These need the rsync transfer (server/rsync, run_rsync_session). Each test first probes
// the capability with a real pull; while the session still answers "not implemented"
// the test is SKIPPED with that reason. Any other failure of the probe FAILS: a transfer
// that exists but breaks is a bug, not a missing feature.
#include <sys/stat.h>

#include "tests/server/daemon_harness.h"

namespace sfs::test {
namespace {

class DaemonTransferTest : public ::testing::Test {
protected:
    void SetUp() override {
        for (const char* d : {"web", "slow", "jail", "ro", "wo", "nobody", "probe", "src", "src/sub", "out", "lax"})
            std::filesystem::create_directories(dir / d);
        ::chmod((dir / "nobody").c_str(), 0777);
        write_file(dir / "probe/p.txt", "probe\n");
        write_file(dir / "ro/keep.txt", "keep\n");
        write_file(dir / "wo/secret.txt", "secret\n");
        write_file(dir / "src/a.txt", "alpha\n");
        write_file(dir / "src/sub/b.txt", std::string(100000, 'b'));
        ::symlink("a.txt", (dir / "src/link").c_str());
        std::string text = "lock file = " + (dir / "lock") + "\nuid = root\ngid = root\n";
        for (auto [name, extra] : std::vector<std::pair<std::string, std::string>>{
                 {"web", "read only = no\nuse chroot = no\n"}, {"jail", "read only = no\nuse chroot = yes\n"},
                 {"ro", ""}, {"wo", "read only = no\nwrite only = yes\n"},
                 {"nobody", "read only = no\nuse chroot = no\nuid = nobody\ngid = nogroup\n"}, {"probe", ""},
                 {"slow", "timeout = 2\n"},
                 {"lax", "read only = no\nuse chroot = no\nignore errors = yes\n"}})
            text += "[" + name + "]\npath = " + (dir / name) + "\n" + extra;
        daemon = std::make_unique<Daemon>(dir, text);
        ASSERT_GT(daemon->pid(), 0);
    }

    // "" when transfers work; otherwise the skip reason (or a test failure).
    std::string transfer_capability() {
        auto r = run("rsync --timeout=10 --contimeout=10 -r " + daemon->url("probe/") + " " + (dir / "out/"));
        if (r.status == 0 && read_file(dir / "out/p.txt") == "probe\n") return "";
        std::string log = daemon->log();
        if (log.find("not implemented") != std::string::npos)
            return "rsync transfer (server/rsync run_rsync_session) not implemented yet";
        ADD_FAILURE() << "probe pull failed although the transfer claims to exist:\n" << r.output << "\n" << log;
        return "probe failed";
    }

    TempDir dir;
    std::unique_ptr<Daemon> daemon;
};

#define REQUIRE_TRANSFER()                                    \
    do {                                                      \
        std::string why = transfer_capability();              \
        if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why; \
    } while (0)

// `use chroot = no`: symlinks are munged on disk by default (rsyncd semantics) and
// unmunged when pulled back, so the round trip is exact.
TEST_F(DaemonTransferTest, PushAndPullThroughAModule) {
    REQUIRE_TRANSFER();
    auto push = run("rsync -a " + (dir / "src/") + " " + daemon->url("web/"));
    ASSERT_EQ(push.status, 0) << push.output;
    EXPECT_EQ(read_file(dir / "web/sub/b.txt"), std::string(100000, 'b'));
    EXPECT_EQ(std::filesystem::read_symlink(dir / "web/link"), "/rsyncd-munged/a.txt");
    std::filesystem::create_directories(dir / "back");
    auto pull = run("rsync -a " + daemon->url("web/") + " " + (dir / "back/"));
    ASSERT_EQ(pull.status, 0) << pull.output;
    EXPECT_EQ(run("diff -r --no-dereference " + (dir / "src") + " " + (dir / "back")).status, 0);
    EXPECT_TRUE(daemon->log_has("module=web user=- request=push")) << daemon->log();
}

// `use chroot = yes` with syncfsd as root (the rsyncd default): the session has no /proc,
// so attributes must be set through fds, never /proc/self/fd/N (that ended every archive
// push with `chmod "dir" failed`, exit 23). Chrooted modules do not munge symlinks, so
// the link is stored as sent. Trees are compared with diff -r, and types, modes, link
// targets and file mtimes (whole seconds: the receiver sets no nanoseconds) with find
// -printf on both sides.
TEST_F(DaemonTransferTest, ChrootedArchivePushAndPullKeepsModes) {
    if (::geteuid() != 0) GTEST_SKIP() << "SKIPPED: chroot needs syncfsd to run as root";
    REQUIRE_TRANSFER();
    for (const char* d : {"tree", "tree/private", "tree/open", "tree/open/deep"})
        std::filesystem::create_directories(dir / d);
    write_file(dir / "tree/plain.txt", "plain\n", 0644);
    write_file(dir / "tree/tool.sh", "#!/bin/sh\n", 0755);
    write_file(dir / "tree/private/key", "key\n", 0600);
    write_file(dir / "tree/open/deep/odd", std::string(70000, 'o'), 0604);
    ::symlink("../plain.txt", (dir / "tree/open/up").c_str());
    ::symlink("private/key", (dir / "tree/keylink").c_str());
    ::mkfifo((dir / "tree/fifo").c_str(), 0600);
    ::chmod((dir / "tree/fifo").c_str(), 0620);  // past the umask: group-writable
    ::chmod((dir / "tree/private").c_str(), 0700);
    ::chmod((dir / "tree/open").c_str(), 0775);
    ::chmod((dir / "tree/open/deep").c_str(), 0711);
    auto push = run("rsync -a " + (dir / "tree/") + " " + daemon->url("jail/"));
    ASSERT_EQ(push.status, 0) << push.output << "\n" << daemon->log();
    EXPECT_EQ(std::filesystem::read_symlink(dir / "jail/open/up"), "../plain.txt");
    std::filesystem::create_directories(dir / "back");
    auto pull = run("rsync -a " + daemon->url("jail/") + " " + (dir / "back/"));
    ASSERT_EQ(pull.status, 0) << pull.output << "\n" << daemon->log();
    // diff reports two fifos as a difference; their type and mode are compared below.
    auto diff = run("diff -r --no-dereference -x fifo " + (dir / "tree") + " " + (dir / "back"));
    EXPECT_EQ(diff.status, 0) << diff.output;
    auto attrs = [&](const std::string& root) {
        return run("find " + root + " -mindepth 1 \\( -type f -printf '%P %y %m %Ts\\n' \\) -o "
                   "-printf '%P %y %m %l\\n' | LC_ALL=C sort").output;
    };
    std::string want = attrs(dir / "tree");
    EXPECT_NE(want.find("private d 700"), std::string::npos) << want;
    EXPECT_NE(want.find("fifo p 620"), std::string::npos) << want;
    EXPECT_EQ(attrs(dir / "jail"), want) << "module side";
    EXPECT_EQ(attrs(dir / "back"), want) << "pulled back";
    EXPECT_TRUE(daemon->log_has("module=jail user=- request=push")) << daemon->log();
}

// rsync -s sends its file arguments in a second, NUL-separated list; the daemon merges it.
TEST_F(DaemonTransferTest, SecludedArgsWithSpaces) {
    REQUIRE_TRANSFER();
    auto push = run("rsync -s -r " + (dir / "src/") + " '" + daemon->url("web/dir with space/") + "'");
    ASSERT_EQ(push.status, 0) << push.output;
    EXPECT_EQ(read_file(dir / "web/dir with space/a.txt"), "alpha\n");
    std::filesystem::create_directories(dir / "back2");
    auto pull = run("rsync -s -r '" + daemon->url("web/dir with space/") + "' " + (dir / "back2/"));
    ASSERT_EQ(pull.status, 0) << pull.output;
    EXPECT_EQ(read_file(dir / "back2/a.txt"), "alpha\n");
}

TEST_F(DaemonTransferTest, PushToReadOnlyModuleIsRefused) {
    REQUIRE_TRANSFER();
    auto r = run("rsync -a " + (dir / "src/") + " " + daemon->url("ro/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("ERROR: module is read only"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "ro/a.txt"));
    EXPECT_EQ(read_file(dir / "ro/keep.txt"), "keep\n");
}

TEST_F(DaemonTransferTest, PullFromWriteOnlyModuleIsRefused) {
    REQUIRE_TRANSFER();
    std::filesystem::create_directories(dir / "stolen");
    auto r = run("rsync -a " + daemon->url("wo/") + " " + (dir / "stolen/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("ERROR: module is write only"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "stolen/secret.txt"));
}

TEST_F(DaemonTransferTest, TransferRunsAsTheModuleUid) {
    REQUIRE_TRANSFER();
    auto r = run("rsync -r " + (dir / "src/") + " " + daemon->url("nobody/"));
    ASSERT_EQ(r.status, 0) << r.output;
    struct stat st {};
    ASSERT_EQ(::stat((dir / "nobody/a.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u) << "files written by the transfer belong to uid 'nobody'";
}

// `timeout = 2`: a client that completes the handshake and then says nothing is
// disconnected after about two seconds instead of holding the process forever.
TEST_F(DaemonTransferTest, ModuleTimeoutDisconnectsASilentClient) {
    REQUIRE_TRANSFER();
    int fd = connect_port(daemon->port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    send_text(fd, "@RSYNCD: 27.0\nslow\n");
    auto ok = read_line(fd);
    ASSERT_TRUE(ok);
    ASSERT_EQ(*ok, "@RSYNCD: OK");
    send_text(fd, "--server\n--sender\n-r\n.\nslow/\n\n");
    auto t0 = std::chrono::steady_clock::now();
    bool eof = false;
    while (!eof && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 500) > 0) {
            char buf[4096];
            eof = ::read(fd, buf, sizeof buf) <= 0;
        }
    }
    ::close(fd);
    EXPECT_TRUE(eof) << "a silent client was not disconnected";
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// A sender's I/O error (here: a directory the unprivileged client cannot read) makes the
// daemon, as receiver, skip --delete, so a partly read source never deletes mirror files
// it merely failed to list; `ignore errors = yes` lets the deletion run anyway (rsyncd).
TEST_F(DaemonTransferTest, ClientIoErrorSkipsDeleteUnlessIgnoreErrors) {
    REQUIRE_TRANSFER();
    std::filesystem::create_directories(dir / "partial/locked");
    write_file(dir / "partial/a.txt", "alpha\n");
    write_file(dir / "partial/locked/hidden.txt", "hidden\n");
    ::chmod((dir / "partial/locked").c_str(), 0);
    for (const char* module : {"web", "lax"}) {
        write_file(dir / (std::string(module) + "/stale.txt"), "stale\n");
        auto push = run("setpriv --reuid=nobody --regid=nogroup --clear-groups rsync -r --delete " +
                        (dir / "partial/") + " " + daemon->url(std::string(module) + "/"));
        EXPECT_EQ(push.status, 23) << module << ": " << push.output;
        EXPECT_NE(push.output.find("opendir"), std::string::npos) << push.output;
        EXPECT_EQ(read_file(dir / (std::string(module) + "/a.txt")), "alpha\n") << module;
        bool stale_kept = std::filesystem::exists(dir / (std::string(module) + "/stale.txt"));
        if (std::string(module) == "web") {
            EXPECT_TRUE(stale_kept) << "deleted despite the sender's I/O error";
            EXPECT_NE(push.output.find("IO error encountered -- skipping file deletion"), std::string::npos)
                << push.output;
        } else {
            EXPECT_FALSE(stale_kept) << "ignore errors = yes did not let --delete run: " << push.output;
        }
    }
}

}  // namespace
}  // namespace sfs::test
