// syncfsd end to end: the real binary on a random loopback port, driven by the real rsync
// client (and by raw sockets where a test must hold a connection mid-handshake).
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "server/daemon/auth.h"
#include "tests/server/daemon_harness.h"

namespace sfs::test {
namespace {

std::string base_config(const TempDir& dir) {
    return "pid file = " + (dir / "syncfsd.pid") + "\n"
           "lock file = " + (dir / "syncfsd.lock") + "\n"
           "uid = root\n"
           "gid = root\n";
}

class DaemonTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::filesystem::create_directories(dir / "web");
        std::filesystem::create_directories(dir / "hidden");
        write_file(dir / "web/index.html", "hello\n");
        write_file(dir / "secrets", "alice:wonderland\nbob:builder\n", 0600);
    }
    std::string config() const {
        return base_config(dir) +
               "motd file = " + (dir / "motd") + "\n"
               "[web]\n"
               "  path = " + (dir / "web") + "\n"
               "  comment = the web root\n"
               "  read only = no\n"
               "[hidden]\n"
               "  path = " + (dir / "hidden") + "\n"
               "  list = no\n"
               "[secure]\n"
               "  path = " + (dir / "web") + "\n"
               "  auth users = alice, bob\n"
               "  secrets file = " + (dir / "secrets") + "\n"
               "[local]\n"
               "  path = " + (dir / "web") + "\n"
               "  hosts allow = 127.0.0.1\n"
               "  hosts deny = *\n"
               "[ro]\n"
               "  path = " + (dir / "web") + "\n"
               "[single]\n"
               "  path = " + (dir / "web") + "\n"
               "  max connections = 1\n";
    }
    TempDir dir;
};

TEST_F(DaemonTest, ListsModulesWithBothUrlForms) {
    write_file(dir / "motd", "Welcome to the mirror\n");
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto r = run("rsync " + d.url());
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("Welcome to the mirror"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("web            \tthe web root"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("secure"), std::string::npos);
    EXPECT_EQ(r.output.find("hidden"), std::string::npos) << "list = no must hide the module";

    auto r2 = run("rsync --port=" + std::to_string(d.port()) + " 127.0.0.1::");
    EXPECT_EQ(r2.status, 0) << r2.output;
    EXPECT_NE(r2.output.find("web            \tthe web root"), std::string::npos) << r2.output;
    EXPECT_EQ(r2.output.find("hidden"), std::string::npos);
    EXPECT_NE(d.log().find("request=list"), std::string::npos) << d.log();
}

TEST_F(DaemonTest, UnknownModuleIsRefusedWithRsyncdMessage) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto r = run("rsync " + d.url("nosuch/"));
    EXPECT_EQ(r.status, 5) << r.output;
    EXPECT_NE(r.output.find("@ERROR: Unknown module 'nosuch'"), std::string::npos) << r.output;
}

TEST_F(DaemonTest, WrongPasswordAndUnknownUserFailAuth) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto t0 = std::chrono::steady_clock::now();
    auto r = run("env RSYNC_PASSWORD=wrong rsync " + d.url().replace(8, 0, "alice@") + "secure/");
    auto elapsed = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(r.status, 5) << r.output;
    EXPECT_NE(r.output.find("@ERROR: auth failed on module secure"), std::string::npos) << r.output;
    EXPECT_GE(elapsed, std::chrono::milliseconds(900)) << "failed auth must be delayed";

    auto r2 = run("env RSYNC_PASSWORD=wonderland rsync " + d.url().replace(8, 0, "mallory@") + "secure/");
    EXPECT_EQ(r2.status, 5) << r2.output;
    EXPECT_NE(r2.output.find("@ERROR: auth failed on module secure"), std::string::npos) << r2.output;
    auto log = d.log();
    EXPECT_NE(log.find("password mismatch for user 'alice'"), std::string::npos) << log;
    EXPECT_NE(log.find("no matching rule for user 'mallory'"), std::string::npos) << log;
}

// Auth succeeds: the daemon logs the request under the user's name right before it starts
// the transfer (the transfer itself is tested in daemon_transfer_test). --timeout bounds
// the client whatever the transfer does.
TEST_F(DaemonTest, CorrectPasswordPassesAuth) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    write_file(dir / "pw", "builder\n", 0600);
    const std::string client = "rsync --timeout=5 --contimeout=5 ";
    for (const std::string& cmd :
         {"env RSYNC_PASSWORD=wonderland " + client + d.url().replace(8, 0, "alice@") + "secure/",
          client + "--password-file=" + (dir / "pw") + " " + d.url().replace(8, 0, "bob@") + "secure/",
          "env RSYNC_PASSWORD=wonderland " + client + "--protocol=29 " + d.url().replace(8, 0, "alice@") + "secure/"}) {
        auto r = run(cmd);
        EXPECT_EQ(r.output.find("auth failed"), std::string::npos) << cmd << "\n" << r.output;
    }
    auto log = d.log();
    EXPECT_NE(log.find("rsync on secure from alice@UNDETERMINED (127.0.0.1)"), std::string::npos) << log;
    EXPECT_NE(log.find("rsync on secure from bob@UNDETERMINED (127.0.0.1)"), std::string::npos) << log;
    EXPECT_EQ(log.find("auth failed"), std::string::npos) << log;
}

// The same over a raw socket, through to the argument list, without any transfer: the
// response is computed with the md5 the client's digest list selects.
TEST_F(DaemonTest, AuthFlowOverRawSocket) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    send_text(fd, "@RSYNCD: 31.0 sha1 md5\nsecure\n");
    auto challenge_line = read_line(fd);
    ASSERT_TRUE(challenge_line);
    ASSERT_TRUE(challenge_line->starts_with("@RSYNCD: AUTHREQD ")) << *challenge_line;
    std::string challenge = challenge_line->substr(18);
    EXPECT_EQ(challenge.size(), 22u) << "base64 without padding of 16 bytes";
    send_text(fd, "alice " + server::auth_response(server::AuthDigest::md5, "wonderland", challenge) + "\n");
    auto ok = read_line(fd);
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, "@RSYNCD: OK");
    ::close(fd);
}

TEST_F(DaemonTest, SecretsFileReadableByOthersIsRefusedUnderStrictModes) {
    ::chmod((dir / "secrets").c_str(), 0644);
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto r = run("env RSYNC_PASSWORD=wonderland rsync " + d.url().replace(8, 0, "alice@") + "secure/");
    EXPECT_EQ(r.status, 5) << r.output;
    EXPECT_NE(r.output.find("@ERROR: auth failed on module secure"), std::string::npos) << r.output;
    EXPECT_NE(d.log().find("must not be other-accessible"), std::string::npos) << d.log();
}

TEST_F(DaemonTest, HostsAllowAndDenyUseTheClientSourceAddress) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto denied = run("rsync --address=127.0.0.2 " + d.url("local/"));
    EXPECT_EQ(denied.status, 5) << denied.output;
    EXPECT_NE(denied.output.find("@ERROR: access denied to local from UNDETERMINED (127.0.0.2)"), std::string::npos)
        << denied.output;
    auto allowed = run("rsync --timeout=5 --contimeout=5 --address=127.0.0.1 " + d.url("local/"));
    EXPECT_EQ(allowed.output.find("access denied"), std::string::npos) << allowed.output;
    EXPECT_NE(d.log().find("rsync on local from UNDETERMINED (127.0.0.1)"), std::string::npos) << d.log();
}

TEST_F(DaemonTest, DeniedUnlistedModuleLooksUnknown) {
    std::string cfg = config() + "[secret]\n  path = " + (dir / "web") + "\n  list = no\n  hosts deny = 127.0.0.0/255.255.255.0\n";
    Daemon d(dir, cfg);
    ASSERT_GT(d.pid(), 0);
    auto r = run("rsync " + d.url("secret/"));
    EXPECT_NE(r.output.find("@ERROR: Unknown module 'secret'"), std::string::npos) << r.output;
}

// Holds one connection of [single] open mid-handshake (after @RSYNCD: OK, before the
// arguments) with a raw socket; the next client must be refused with rsyncd's message.
TEST_F(DaemonTest, MaxConnectionsReached) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(read_line(fd).has_value());  // greeting
    send_text(fd, "@RSYNCD: 30.0 md5\nsingle\n");
    auto ok = read_line(fd);
    ASSERT_TRUE(ok.has_value());
    EXPECT_EQ(*ok, "@RSYNCD: OK");

    auto r = run("rsync " + d.url("single/"));
    EXPECT_EQ(r.status, 5) << r.output;
    EXPECT_NE(r.output.find("@ERROR: max connections (1) reached -- try again later"), std::string::npos) << r.output;

    ::close(fd);  // the holder's process exits and its lock goes with it
    bool freed = false;
    for (int i = 0; i < 100 && !freed; ++i) {
        int fd2 = connect_port(d.port());
        ASSERT_GE(fd2, 0);
        read_line(fd2);
        send_text(fd2, "@RSYNCD: 30.0 md5\nsingle\n");
        auto line = read_line(fd2);
        freed = line && *line == "@RSYNCD: OK";
        ::close(fd2);
        if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(freed) << "slot not released after the holder disconnected";
}

TEST_F(DaemonTest, ProtocolDispatchOnFirstLine) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        auto greeting = read_line(fd);
        ASSERT_TRUE(greeting.has_value());
        EXPECT_TRUE(greeting->starts_with("@RSYNCD: ")) << *greeting;
        EXPECT_TRUE(greeting->ends_with(" md5 md4")) << *greeting;
        send_text(fd, "GET / HTTP/1.0\n");
        auto err = read_line(fd);
        ASSERT_TRUE(err.has_value());
        EXPECT_EQ(*err, "@ERROR: protocol startup error");
        ::close(fd);
    }
    {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        read_line(fd);
        send_text(fd, "SYNCFS 1\n");  // native dispatch; a SYNCFS line without a module is refused
        auto err = read_line(fd);
        ASSERT_TRUE(err.has_value());
        EXPECT_EQ(*err, "@ERROR: protocol startup error");
        ::close(fd);
    }
    {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        read_line(fd);
        send_text(fd, "SYNCFS 1 no-such-module\n");  // native dispatch reaches module lookup
        std::optional<std::string> err;
        while ((err = read_line(fd)) && !err->starts_with("@ERROR")) {}  // skip a motd
        ASSERT_TRUE(err.has_value());
        EXPECT_EQ(*err, "@ERROR: Unknown module 'no-such-module'");
        ::close(fd);
    }
    {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        read_line(fd);
        send_text(fd, "@RSYNCD: 26.0\n");
        auto err = read_line(fd);
        ASSERT_TRUE(err.has_value());
        EXPECT_TRUE(err->starts_with("@ERROR: protocol version 26 is too old")) << *err;
        ::close(fd);
    }
    {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        read_line(fd);
        send_text(fd, "@RSYNCD: 31\n");
        auto err = read_line(fd);
        ASSERT_TRUE(err.has_value());
        EXPECT_EQ(*err, "@ERROR: your client omitted the subprotocol value: @RSYNCD: 31");
        ::close(fd);
    }
}

TEST_F(DaemonTest, HandshakeLinesAreBounded) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    std::string huge(100000, 'A');
    ::send(fd, huge.data(), huge.size(), MSG_NOSIGNAL);
    // The daemon gives up on the over-long line and closes: EOF, not a hang.
    EXPECT_FALSE(read_line(fd).has_value());
    ::close(fd);
    for (int i = 0; i < 50 && d.log().find("longer than") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_NE(d.log().find("longer than"), std::string::npos) << d.log();
}

TEST_F(DaemonTest, SighupReloadsAndABadConfigKeepsTheOldOne) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    write_file(d.config_path(), config() + "[added]\n  path = " + (dir / "web") + "\n  comment = new one\n");
    ::kill(d.pid(), SIGHUP);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
        seen = run("rsync " + d.url()).output.find("new one") != std::string::npos;
        if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(seen) << "SIGHUP did not load the new module";

    write_file(d.config_path(), config() + "[broken\n");
    ::kill(d.pid(), SIGHUP);
    bool logged = false;
    for (int i = 0; i < 100 && !logged; ++i) {
        logged = d.log().find("keeping the previous configuration") != std::string::npos;
        if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(logged) << d.log();
    EXPECT_NE(d.log().find("syncfsd.conf:26: section header without closing ']'"), std::string::npos) << d.log();
    EXPECT_NE(run("rsync " + d.url()).output.find("new one"), std::string::npos) << "old config lost";
}

TEST_F(DaemonTest, SigtermExitsZeroAndRemovesPidFile) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    ASSERT_EQ(read_file(dir / "syncfsd.pid"), std::to_string(d.pid()) + "\n");
    EXPECT_EQ(d.signal_and_wait(SIGTERM), 0);
    EXPECT_FALSE(std::filesystem::exists(dir / "syncfsd.pid"));
}

TEST_F(DaemonTest, DetachesWritesPidFileAndStopsOnSigterm) {
    write_file(dir / "d.conf", config());
    int port = free_port();
    auto r = run(std::string(SYNCFSD_BIN) + " --config " + (dir / "d.conf") + " --address 127.0.0.1 --port " +
                 std::to_string(port) + " --log-file " + (dir / "d.log"));
    ASSERT_EQ(r.status, 0) << r.output;
    pid_t pid = 0;
    for (int i = 0; i < 100 && pid == 0; ++i) {
        pid = std::atoi(read_file(dir / "syncfsd.pid").c_str());
        if (pid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_GT(pid, 0);
    auto listing = run("rsync rsync://127.0.0.1:" + std::to_string(port) + "/");
    EXPECT_NE(listing.output.find("web"), std::string::npos) << listing.output;
    ::kill(pid, SIGTERM);
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
        gone = ::kill(pid, 0) != 0 && !std::filesystem::exists(dir / "syncfsd.pid");
        if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(gone);
    if (!gone) ::kill(pid, SIGKILL);
}

TEST_F(DaemonTest, MalformedConfigFailsWithFileAndLine) {
    write_file(dir / "bad.conf", "port = 873\n# comment\n[web]\n  path = /srv\n  read only = maybe\n");
    auto r = run(std::string(SYNCFSD_BIN) + " --no-detach --config " + (dir / "bad.conf"));
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.output.find(dir / "bad.conf" + ":5: 'read only': expected a boolean"), std::string::npos) << r.output;

    write_file(dir / "bad2.conf", "[web]\npath /srv\n");
    auto r2 = run(std::string(SYNCFSD_BIN) + " --no-detach --config " + (dir / "bad2.conf"));
    EXPECT_EQ(r2.status, 1);
    EXPECT_NE(r2.output.find(dir / "bad2.conf" + ":2: expected 'name = value'"), std::string::npos) << r2.output;

    auto r3 = run(std::string(SYNCFSD_BIN) + " --no-detach --config " + (dir / "missing.conf"));
    EXPECT_EQ(r3.status, 1);
    EXPECT_NE(r3.output.find("missing.conf: cannot open"), std::string::npos) << r3.output;
}

TEST_F(DaemonTest, UnknownOptionWarnsWithFileAndLine) {
    Daemon d(dir, config() + "  frobnicate = yes\n");
    ASSERT_GT(d.pid(), 0) << "an unknown option must not stop the daemon";
    EXPECT_NE(d.log().find("syncfsd.conf:26: unknown option 'frobnicate' ignored"), std::string::npos) << d.log();
}

// --inetd: one connection on stdin/stdout, here a socketpair.
TEST_F(DaemonTest, InetdServesOneConnectionOnStdio) {
    write_file(dir / "i.conf", config());
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(sv[1], 0);
        ::dup2(sv[1], 1);
        std::string conf = dir / "i.conf", log = dir / "i.log";
        ::execl(SYNCFSD_BIN, SYNCFSD_BIN, "--inetd", "--config", conf.c_str(), "--log-file", log.c_str(), nullptr);
        ::_exit(127);
    }
    ::close(sv[1]);
    auto greeting = read_line(sv[0]);
    ASSERT_TRUE(greeting.has_value());
    EXPECT_TRUE(greeting->starts_with("@RSYNCD: "));
    send_text(sv[0], "@RSYNCD: 30.0 md5\n#list\n");
    std::vector<std::string> lines;
    while (auto l = read_line(sv[0])) {
        lines.push_back(*l);
        if (*l == "@RSYNCD: EXIT") break;
    }
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back(), "@RSYNCD: EXIT");
    EXPECT_NE(std::find(lines.begin(), lines.end(), "web            \tthe web root"), lines.end());
    ::close(sv[0]);
    int st = 0;
    for (int i = 0; i < 100 && ::waitpid(pid, &st, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (::kill(pid, 0) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        FAIL() << "syncfsd --inetd did not exit after its one connection";
    }
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_NE(read_file(dir / "i.log").find("connection from UNDETERMINED (0.0.0.0)"), std::string::npos);
}

}  // namespace
}  // namespace sfs::test
