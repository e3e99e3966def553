// syncfsd end to end: the real binary on a random loopback port, driven by the real rsync
// client (and by raw sockets where a test must hold a connection mid-handshake).
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "server/daemon/auth.h"
#include "server/rsync/session.h"
#include "tests/server/daemon_harness.h"
#include "tests/support/eventually.h"

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
    EXPECT_TRUE(d.log_has("request=list")) << d.log();
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
    EXPECT_TRUE(d.log_has("password mismatch for user 'alice'")) << d.log();
    EXPECT_TRUE(d.log_has("no matching rule for user 'mallory'")) << d.log();
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
    EXPECT_TRUE(d.log_has("rsync on secure from alice@UNDETERMINED (127.0.0.1)")) << d.log();
    EXPECT_TRUE(d.log_has("rsync on secure from bob@UNDETERMINED (127.0.0.1)")) << d.log();
    EXPECT_EQ(d.log().find("auth failed"), std::string::npos) << d.log();
}

// The same over a raw socket, through to the argument list, without any transfer: the
// response is computed with the md5 the client's digest list selects.
TEST_F(DaemonTest, AuthFlowOverRawSocket) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    send_text(fd, "@RSYNCD: 31.0 xxh128 md5\nsecure\n");
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

// Clients that send no digest list (older rsync): md4 "old style" (4 zero bytes hashed
// first) when the NEGOTIATED protocol is below 30, md5 from 30 on. The wrong digest fails.
TEST_F(DaemonTest, AuthDigestWithoutClientListFollowsTheProtocol) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    struct Case {
        std::string greeting;
        server::AuthDigest digest;
        bool ok;
    };
    const auto v30 = server::max_protocol_version() >= 30 ? server::AuthDigest::md5 : server::AuthDigest::md4_old;
    for (const auto& c : std::vector<Case>{{"@RSYNCD: 29.0", server::AuthDigest::md4_old, true},
                                           {"@RSYNCD: 29.0", server::AuthDigest::md5, false},
                                           {"@RSYNCD: 30.0", v30, true},
                                           {"@RSYNCD: 31.0 md4", server::AuthDigest::md4, true},
                                           {"@RSYNCD: 31.0 md4", server::AuthDigest::md4_old, false}}) {
        int fd = connect_port(d.port());
        ASSERT_GE(fd, 0);
        read_line(fd);
        send_text(fd, c.greeting + "\nsecure\n");
        auto challenge_line = read_line(fd);
        ASSERT_TRUE(challenge_line && challenge_line->starts_with("@RSYNCD: AUTHREQD ")) << c.greeting;
        send_text(fd, "bob " + server::auth_response(c.digest, "builder", challenge_line->substr(18)) + "\n");
        auto reply = read_line(fd);
        ASSERT_TRUE(reply) << c.greeting;
        EXPECT_EQ(*reply, c.ok ? "@RSYNCD: OK" : "@ERROR: auth failed on module secure") << c.greeting;
        ::close(fd);
    }
}

TEST_F(DaemonTest, SecretsFileReadableByOthersIsRefusedUnderStrictModes) {
    ::chmod((dir / "secrets").c_str(), 0644);
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    auto r = run("env RSYNC_PASSWORD=wonderland rsync " + d.url().replace(8, 0, "alice@") + "secure/");
    EXPECT_EQ(r.status, 5) << r.output;
    EXPECT_NE(r.output.find("@ERROR: auth failed on module secure"), std::string::npos) << r.output;
    EXPECT_TRUE(d.log_has("must not be other-accessible")) << d.log();
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
    EXPECT_TRUE(d.log_has("rsync on local from UNDETERMINED (127.0.0.1)")) << d.log();
}

TEST_F(DaemonTest, ListensOnIpv6AndMatchesIpv6Hosts) {
    std::string cfg = config() + "[v6]\n  path = " + (dir / "web") + "\n  hosts allow = ::1/128\n"
                      "[v4only]\n  path = " + (dir / "web") + "\n  hosts allow = 127.0.0.0/8\n";
    Daemon d(dir, cfg, {}, "::1");
    ASSERT_GT(d.pid(), 0);
    const std::string host = "rsync://[::1]:" + std::to_string(d.port()) + "/";
    auto list = run("rsync " + host);
    EXPECT_EQ(list.status, 0) << list.output;
    EXPECT_NE(list.output.find("v6"), std::string::npos) << list.output;
    auto denied = run("rsync " + host + "v4only/");
    EXPECT_NE(denied.output.find("@ERROR: access denied to v4only from UNDETERMINED (::1)"), std::string::npos)
        << denied.output;
    auto allowed = run("rsync --timeout=5 --contimeout=5 " + host + "v6/");
    EXPECT_EQ(allowed.output.find("access denied"), std::string::npos) << allowed.output;
}

// `refuse options`: the client prints rsyncd's message; nothing is transferred.
TEST_F(DaemonTest, RefusedOptionIsReportedToTheClient) {
    std::filesystem::create_directories(dir / "src");
    write_file(dir / "src/new.txt", "new\n");
    std::string cfg = config() + "[strict]\n  path = " + (dir / "hidden") +
                      "\n  read only = no\n  refuse options = delete checksum\n";
    Daemon d(dir, cfg);
    ASSERT_GT(d.pid(), 0);
    auto r = run("rsync -r --delete " + (dir / "src/") + " " + d.url("strict/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("The server is configured to refuse --delete"), std::string::npos) << r.output;
    auto c = run("rsync -rc " + (dir / "src/") + " " + d.url("strict/"));
    EXPECT_NE(c.output.find("The server is configured to refuse --checksum"), std::string::npos) << c.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "hidden/new.txt"));
    EXPECT_TRUE(d.log_has("client option --delete is in 'refuse options'")) << d.log();
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
    for (int i = 0; i < 600 && !freed; ++i) {
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

TEST_F(DaemonTest, ControlBytesInNamesAreNotEchoed) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    send_text(fd, "@RSYNCD: 30.0 md5\nwe\x1b[31mb\r\x07x\n");
    auto err = read_line(fd);
    ASSERT_TRUE(err);
    EXPECT_EQ(*err, "@ERROR: Unknown module 'we?[31mb??x'");
    ::close(fd);
    EXPECT_TRUE(d.log_has("unknown module 'we?[31mb??x'")) << d.log();
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
    EXPECT_TRUE(d.log_has("longer than")) << d.log();
}

TEST_F(DaemonTest, SighupReloadsAndABadConfigKeepsTheOldOne) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    write_file(d.config_path(), config() + "[added]\n  path = " + (dir / "web") + "\n  comment = new one\n");
    ::kill(d.pid(), SIGHUP);
    const bool seen = testsupport::eventually(
        [&] { return run("rsync " + d.url()).output.find("new one") != std::string::npos; });
    EXPECT_TRUE(seen) << "SIGHUP did not load the new module";

    write_file(d.config_path(), config() + "[broken\n");
    ::kill(d.pid(), SIGHUP);
    EXPECT_TRUE(d.log_has("keeping the previous configuration")) << d.log();
    EXPECT_TRUE(d.log_has("syncfsd.conf:26: section header without closing ']'")) << d.log();
    EXPECT_NE(run("rsync " + d.url()).output.find("new one"), std::string::npos) << "old config lost";
}

// logrotate without a postrotate script (what Debian's rsync stanza does): the log file is
// renamed away, and the daemon and its connection processes start a new one at the path.
TEST_F(DaemonTest, RotatedLogFileIsStartedAgainAtItsPath) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    EXPECT_EQ(run("rsync " + d.url()).status, 0);
    ASSERT_TRUE(d.log_has("request=list")) << d.log();
    std::filesystem::rename(dir / "syncfsd.log", dir / "syncfsd.log.1");
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the path is checked once a second
    EXPECT_EQ(run("rsync " + d.url()).status, 0);
    EXPECT_TRUE(d.log_has("request=list")) << "nothing logged at the path after the rotation";
    const std::string rotated = read_file(dir / "syncfsd.log.1");
    const auto first = rotated.find("request=list");
    EXPECT_NE(first, std::string::npos) << rotated;
    EXPECT_EQ(rotated.find("request=list", first + 1), std::string::npos) << "the second listing went to the old file";
}

TEST_F(DaemonTest, SigtermExitsZeroAndRemovesPidFile) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    // In the foreground the port is open a moment before the pid file is written.
    testsupport::eventually([&] { return std::filesystem::exists(dir / "syncfsd.pid"); });
    ASSERT_EQ(read_file(dir / "syncfsd.pid"), std::to_string(d.pid()) + "\n");
    EXPECT_EQ(d.signal_and_wait(SIGTERM), 0);
    EXPECT_FALSE(std::filesystem::exists(dir / "syncfsd.pid"));
}

// SIGTERM stops accepting at once but lets a connection already in progress finish.
TEST_F(DaemonTest, SigtermLetsARunningConnectionFinish) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(read_line(fd).has_value());  // the connection process is now running
    ::kill(d.pid(), SIGTERM);
    const bool refused = testsupport::eventually([&] {
        int probe = connect_port(d.port());
        if (probe >= 0) ::close(probe);
        return probe < 0;
    });
    EXPECT_TRUE(refused) << "still accepting after SIGTERM";
    send_text(fd, "@RSYNCD: 30.0 md5\n#list\n");
    std::string last;
    while (auto l = read_line(fd)) last = *l;
    EXPECT_EQ(last, "@RSYNCD: EXIT") << "the running connection was cut off";
    ::close(fd);
    EXPECT_EQ(d.signal_and_wait(0), 0);
    EXPECT_FALSE(std::filesystem::exists(dir / "syncfsd.pid"));
}

TEST_F(DaemonTest, DetachesWritesPidFileAndStopsOnSigterm) {
    write_file(dir / "d.conf", config());
    int port = free_port();
    auto r = run(std::string(SYNCFSD_BIN) + " --config " + (dir / "d.conf") + " --address 127.0.0.1 --port " +
                 std::to_string(port) + " --log-file " + (dir / "d.log"));
    ASSERT_EQ(r.status, 0) << r.output;
    // The parent returns only once the daemon runs and its pid file exists.
    pid_t pid = std::atoi(read_file(dir / "syncfsd.pid").c_str());
    ASSERT_GT(pid, 0);
    auto listing = run("rsync rsync://127.0.0.1:" + std::to_string(port) + "/");
    EXPECT_NE(listing.output.find("web"), std::string::npos) << listing.output;
    ::kill(pid, SIGTERM);
    const bool gone = testsupport::eventually(
        [&] { return ::kill(pid, 0) != 0 && !std::filesystem::exists(dir / "syncfsd.pid"); });
    EXPECT_TRUE(gone);
    if (!gone) ::kill(pid, SIGKILL);
}

// Detached start with a pid file naming a live process: the parent exits 1.
TEST_F(DaemonTest, DetachedStartFailsWhenAlreadyRunning) {
    Daemon d(dir, config());
    ASSERT_GT(d.pid(), 0);
    testsupport::eventually([&] { return std::filesystem::exists(dir / "syncfsd.pid"); });
    write_file(dir / "d.conf", config());
    auto r = run(std::string(SYNCFSD_BIN) + " --config " + (dir / "d.conf") + " --address 127.0.0.1 --port " +
                 std::to_string(free_port()) + " --log-file " + (dir / "d.log"));
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_TRUE(file_gets(dir / "d.log", "already running with pid " + std::to_string(d.pid())))
        << read_file(dir / "d.log");
    EXPECT_EQ(read_file(dir / "syncfsd.pid"), std::to_string(d.pid()) + "\n") << "the running daemon's pid file was touched";
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
    EXPECT_TRUE(d.log_has("syncfsd.conf:26: unknown option 'frobnicate' ignored")) << d.log();
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
    testsupport::eventually([&] { return ::waitpid(pid, &st, WNOHANG) != 0; });
    if (::kill(pid, 0) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        FAIL() << "syncfsd --inetd did not exit after its one connection";
    }
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_TRUE(file_gets(dir / "i.log", "connection from UNDETERMINED (0.0.0.0)")) << read_file(dir / "i.log");
}

}  // namespace
}  // namespace sfs::test
