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
        for (const char* d : {"web", "jail", "ro", "wo", "nobody", "probe", "src", "src/sub", "out"})
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
                 {"nobody", "read only = no\nuid = nobody\ngid = nogroup\n"}, {"probe", ""}})
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
    EXPECT_NE(daemon->log().find("module=web user=- request=push"), std::string::npos) << daemon->log();
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

}  // namespace
}  // namespace sfs::test
