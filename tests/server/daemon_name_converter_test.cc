// `name converter`: the real syncfsd (as root, on a random loopback port) runs the module's
// helper program once per connection and maps user/group names and ids through it, in both
// directions, with the real rsync client; a helper that dies or answers garbage leaves the
// ids numeric with a clear error instead of mapping anything to root.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "daemon_harness.h"
#include "tests/support/eventually.h"

namespace sfs::test {
namespace {

namespace fs = std::filesystem;

class DaemonNameConverter : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
        fs::create_directories(dir / "mod");
        fs::create_directories(dir / "src");
    }
    // `script`: the body of a /bin/sh helper (its requests are also logged to cvt.log).
    void start(const std::string& script) {
        write_file(dir / "cvt.sh", "#!/bin/sh\n" + script, 0755);
        d.emplace(dir, "use chroot = no\nuid = root\ngid = root\nlog file = " + (dir / "syncfsd.log") +
                           "\n[conv]\npath = " + (dir / "mod") + "\nread only = no\nnumeric ids = no\n"
                           "name converter = " + (dir / "cvt.sh") + "\n");
        ASSERT_GT(d->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    }
    static struct stat owner(const std::string& p) {
        struct stat st {};
        ::lstat(p.c_str(), &st);
        return st;
    }
    TempDir dir;
    std::optional<Daemon> d;
};

// Maps every user name to 4242 and every group name to 4343, and ids 4242/4343 to "daemon".
std::string mapping_script(const std::string& log) {
    return "while read cmd arg; do\n"
           "  echo \"$cmd $arg\" >> " + log + "\n"
           "  case $cmd in\n"
           "    usr) echo 4242 ;;\n"
           "    grp) echo 4343 ;;\n"
           "    uid|gid) if [ \"$arg\" = 4242 ] || [ \"$arg\" = 4343 ]; then echo daemon; else echo; fi ;;\n"
           "    *) echo ;;\n"
           "  esac\n"
           "done\n";
}

TEST_F(DaemonNameConverter, PushMapsTheSendersNamesThroughTheHelper) {
    start(mapping_script(dir / "cvt.log"));
    write_file(dir / "src/f", "data\n");
    ASSERT_EQ(::chown((dir / "src/f").c_str(), 1, 1), 0);   // "daemon" on the client side
    auto r = run("rsync -rog " + (dir / "src/") + " " + d->url("conv/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(owner(dir / "mod/f").st_uid, 4242u);
    EXPECT_EQ(owner(dir / "mod/f").st_gid, 4343u);
    std::string log = read_file(dir / "cvt.log");
    EXPECT_NE(log.find("usr daemon"), std::string::npos) << log;
    EXPECT_NE(log.find("grp daemon"), std::string::npos) << log;
}

TEST_F(DaemonNameConverter, PullNamesTheModulesIdsThroughTheHelper) {
    start(mapping_script(dir / "cvt.log"));
    write_file(dir / "mod/f", "data\n");
    ASSERT_EQ(::chown((dir / "mod/f").c_str(), 4242, 4343), 0);   // no passwd entry here
    fs::create_directories(dir / "out");
    auto r = run("rsync -rog " + d->url("conv/f") + " " + (dir / "out/"));
    ASSERT_EQ(r.status, 0) << r.output;
    // The helper named 4242/4343 "daemon"; the client mapped that name to its own id 1.
    EXPECT_EQ(owner(dir / "out/f").st_uid, 1u);
    EXPECT_EQ(owner(dir / "out/f").st_gid, 1u);
    std::string log = read_file(dir / "cvt.log");
    EXPECT_NE(log.find("uid 4242"), std::string::npos) << log;
    EXPECT_NE(log.find("gid 4343"), std::string::npos) << log;
}

TEST_F(DaemonNameConverter, GarbageAnswersKeepIdsNumericNeverRoot) {
    // Empty lines ("unknown") and non-numbers never become id 0.
    start("while read cmd arg; do echo \"$cmd $arg\" >> " + (dir / "cvt.log") +
          "; case $cmd in usr) echo ;; *) echo 'x12' ;; esac; done\n");
    write_file(dir / "src/f", "data\n");
    ASSERT_EQ(::chown((dir / "src/f").c_str(), 2, 2), 0);   // "bin"
    auto r = run("rsync -rog " + (dir / "src/") + " " + d->url("conv/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(owner(dir / "mod/f").st_uid, 2u);
    EXPECT_EQ(owner(dir / "mod/f").st_gid, 2u);
    std::string log = read_file(dir / "cvt.log");   // the helper was asked (and not believed)
    EXPECT_NE(log.find("usr bin"), std::string::npos) << log;
    EXPECT_NE(log.find("grp bin"), std::string::npos) << log;
}

TEST_F(DaemonNameConverter, AHelperThatDiesIsReportedAndIdsStayNumeric) {
    start("exit 0\n");
    write_file(dir / "src/f", "data\n");
    ASSERT_EQ(::chown((dir / "src/f").c_str(), 2, 2), 0);
    auto r = run("rsync -rog " + (dir / "src/") + " " + d->url("conv/"));
    EXPECT_NE(r.output.find("name converter of module conv failed"), std::string::npos) << r.output;
    EXPECT_EQ(read_file(dir / "mod/f"), "data\n");
    EXPECT_EQ(owner(dir / "mod/f").st_uid, 2u);
    EXPECT_TRUE(d->log_has("name converter")) << d->log();
}

TEST_F(DaemonNameConverter, AFloodingHelperIsBounded) {
    // Endless output without a newline: cut at 1024 bytes, the helper is stopped.
    start("read x; yes abcdefgh | tr -d '\\n'\n");
    write_file(dir / "src/f", "data\n");
    ASSERT_EQ(::chown((dir / "src/f").c_str(), 2, 2), 0);
    auto r = run("rsync -rog " + (dir / "src/") + " " + d->url("conv/"));
    EXPECT_NE(r.output.find("reply longer than 1024 bytes"), std::string::npos) << r.output;
    EXPECT_EQ(owner(dir / "mod/f").st_uid, 2u);
}

// A helper started as root cannot be killed by a connection that has dropped to `uid =
// nobody`; one that ignores the end of its input (a shell loop that never checks `read`)
// must still not keep the connection process, and its `max connections` slot, forever: the
// connection ends with the transfer and the helper dies with it (PR_SET_PDEATHSIG).
TEST_F(DaemonNameConverter, HelperThatIgnoresEofEndsWithTheConnectionAfterThePrivilegeDrop) {
    write_file(dir / "cvt.sh", "#!/bin/sh\necho $$ > " + (dir / "cvt.pid") +
                                   "\nwhile :; do read cmd arg; echo \"user$arg\"; done\n", 0755);
    ::chmod((dir / "mod").c_str(), 0777);
    d.emplace(dir, "use chroot = no\nlog file = " + (dir / "syncfsd.log") + "\n[conv]\npath = " + (dir / "mod") +
                       "\nread only = no\nuid = nobody\ngid = nogroup\nnumeric ids = no\nname converter = " +
                       (dir / "cvt.sh") + "\n");
    ASSERT_GT(d->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    write_file(dir / "src/f", "data\n");
    // -og: the transfer asks the helper for names, so it has run (and written its pid).
    auto r = run("rsync -rog " + (dir / "src/") + " " + d->url("conv/"));
    EXPECT_EQ(r.status, 0) << r.output;
    // The pid file is written before the helper's first reply; read it with a bound anyway.
    pid_t helper = 0;
    testsupport::eventually([&] {
        const std::string text = read_file(dir / "cvt.pid");
        if (!text.empty() && text.back() == '\n') helper = static_cast<pid_t>(std::stol(text));
        return helper > 0;
    });
    ASSERT_GT(helper, 0) << "the name converter never ran\n" << read_file(dir / "syncfsd.log");
    const bool gone = testsupport::eventually([&] { return ::kill(helper, 0) != 0 && errno == ESRCH; });
    EXPECT_TRUE(gone) << "the name converter outlived its connection\n" << read_file(dir / "syncfsd.log");
    if (!gone) ::kill(helper, SIGKILL);
    EXPECT_TRUE(file_gets(dir / "syncfsd.log", "module=conv", std::chrono::seconds(10))) << read_file(dir / "syncfsd.log");
}

}  // namespace
}  // namespace sfs::test
