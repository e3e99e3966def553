// MirrorLink (client side): URL parsing, password files, and full connections to a real
// native session behind a minimal daemon text phase on 127.0.0.1 / ::1 (the real syncfsd
// takes this place in native_syncfsd_test once it is merged).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

#include "fmt/format.h"

#include "protocol/native/auth.h"
#include "replicator/mirror_link.h"
#include "tests/replicator/native_test_util.h"

namespace sfs::testing {
namespace {

using repl::MirrorLink;
using repl::parse_mirror_url;

TEST(NativeLink, ParsesMirrorUrls) {
    auto u = parse_mirror_url("rsync://web@mirror.example:8873/web");
    ASSERT_TRUE(u.has_value()) << u.error().message;
    EXPECT_EQ(u->user, "web");
    EXPECT_EQ(u->host, "mirror.example");
    EXPECT_EQ(u->port, 8873);
    EXPECT_EQ(u->module, "web");
    u = parse_mirror_url("rsync://mirror/web/");
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->port, 873);
    EXPECT_EQ(u->user, "");
    EXPECT_EQ(u->display(), "mirror:873/web");
    u = parse_mirror_url("rsync://me@[::1]:1234/m");
    ASSERT_TRUE(u.has_value()) << u.error().message;
    EXPECT_EQ(u->host, "::1");
    EXPECT_EQ(u->port, 1234);
    EXPECT_EQ(u->display(), "me@[::1]:1234/m");
    u = parse_mirror_url("rsync://[::1]/m");
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->port, 873);
    for (const char* bad : {"http://h/m", "rsync://h", "rsync://h/", "rsync:///m", "rsync://h:0/m", "rsync://h:70000/m",
                            "rsync://h:x/m", "rsync://h:/m", "rsync://[::1/m", "rsync://[::1]x/m", "rsync://h/a/b",
                            "rsync://@h/m", "rsync://h/m m"}) {
        auto r = parse_mirror_url(bad);
        EXPECT_FALSE(r.has_value()) << bad;
        if (!r) {
            EXPECT_NE(r.error().message.find(bad), std::string::npos) << r.error().message;
        }
    }
}

TEST(NativeLink, PasswordFileRules) {
    TempDir t;
    auto p = t.path() / "secret";
    write_file(p, "s3cret\nsecond line\n");
    ::chmod(p.c_str(), 0644);
    auto r = repl::read_password_file(p.string());
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("other-accessible"), std::string::npos);
    EXPECT_NE(r.error().message.find(p.string()), std::string::npos);
    ::chmod(p.c_str(), 0600);
    r = repl::read_password_file(p.string());
    ASSERT_TRUE(r.has_value()) << r.error().message;
    EXPECT_EQ(*r, "s3cret");
    write_file(p, "crlf\r\n");
    EXPECT_EQ(*repl::read_password_file(p.string()), "crlf");
    EXPECT_FALSE(repl::read_password_file((t.path() / "missing").string()).has_value());
}

TEST(NativeLink, Base64MatchesRfc4648WithoutPadding) {
    auto b = [](std::string_view s) {
        return protocol::native::base64_nopad(std::span<const unsigned char>(reinterpret_cast<const unsigned char*>(s.data()), s.size()));
    };
    EXPECT_EQ(b(""), "");
    EXPECT_EQ(b("f"), "Zg");
    EXPECT_EQ(b("fo"), "Zm8");
    EXPECT_EQ(b("foo"), "Zm9v");
    EXPECT_EQ(b("foobar"), "Zm9vYmFy");
}

// A stand-in for syncfsd's text phase: greeting, `SYNCFS 1 <module>`, optional auth, OK,
// then the real run_native_session on the accepted socket.
class FakeDaemon {
public:
    FakeDaemon(int family, server::NativeModule module, std::string password = "", bool mute = false)
        : module_(std::move(module)), password_(std::move(password)) {
        listen_.reset(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET6) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
            a->sin6_family = AF_INET6;
            a->sin6_addr = in6addr_loopback;
            len = sizeof *a;
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&ss);
            a->sin_family = AF_INET;
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof *a;
        }
        EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
        EXPECT_EQ(::listen(listen_.get(), 4), 0);
        EXPECT_EQ(::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
        port_ = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
        thread_ = std::thread([this, mute] { serve(mute); });
    }
    ~FakeDaemon() {
        ::shutdown(listen_.get(), SHUT_RDWR);
        if (conn_ >= 0) ::shutdown(conn_, SHUT_RDWR);
        thread_.join();
    }
    int port() const { return port_; }
    std::string first_line() const { return first_line_; }
    std::uint64_t session_bytes_in() const { return bytes_in_; }

private:
    std::string read_line(int fd) {
        std::string l;
        char c;
        while (::read(fd, &c, 1) == 1 && c != '\n') l += c;
        return l;
    }
    void say(int fd, const std::string& s) { (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }
    void serve(bool mute) {
        int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        UniqueFd conn(fd);
        conn_ = fd;
        if (mute) {  // accept, then say nothing until the test ends
            char c;
            while (::read(fd, &c, 1) > 0) {}
            return;
        }
        say(fd, "@RSYNCD: 31.0 md5 md4\n");
        first_line_ = read_line(fd);
        say(fd, "Welcome to the test mirror\n");  // a motd line
        if (!password_.empty()) {
            const std::string challenge = "c2FsdHNhbHRzYWx0c2FsdA";
            say(fd, "@RSYNCD: AUTHREQD " + challenge + "\n");
            std::string reply = read_line(fd);
            if (reply != "alice " + protocol::native::rsync_auth_response(password_, challenge)) {
                say(fd, "@ERROR: auth failed on module test\n");
                return;
            }
        }
        say(fd, "@RSYNCD: OK\n");
        auto r = server::run_native_session(fd, fd, module_);
        if (r) bytes_in_ = r->bytes_in;
    }

    server::NativeModule module_;
    std::string password_;
    UniqueFd listen_;
    std::atomic<int> conn_{-1};
    int port_ = 0;
    std::thread thread_;
    std::string first_line_;
    std::atomic<std::uint64_t> bytes_in_{0};
};

std::string secret_file(const TempDir& t, const std::string& password) {
    auto p = t.path() / "secret";
    write_file(p, password + "\n");
    ::chmod(p.c_str(), 0600);
    return p.string();
}

TEST(NativeLink, ConnectsAuthenticatesAndReplicates) {
    ModuleDirs d;
    FakeDaemon daemon(AF_INET, d.module(), "pw");
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/test", daemon.port()), secret_file(d.tmp, "pw"), "stream-1");
    ASSERT_TRUE(link.has_value()) << link.error().message;
    EXPECT_EQ((*link)->hello().applied_seq, 0u);
    EXPECT_EQ(daemon.first_line(), "SYNCFS " + std::to_string(pn::kProtocolVersion) + " test");
    ASSERT_TRUE((*link)->queue(pn::Mkdir{1, "a", 0755, 0, 0}).has_value());
    ASSERT_TRUE((*link)->queue(pn::Create{2, "a/f", 0644, 0, 0}).has_value());
    ASSERT_TRUE((*link)->flush().has_value());
    ASSERT_TRUE((*link)->send(pn::Barrier{7, false}).has_value());
    std::uint64_t acked = 0;
    for (;;) {
        auto m = (*link)->receive();
        ASSERT_TRUE(m.has_value()) << m.error().message;
        if (auto* a = std::get_if<pn::Ack>(&*m)) acked = a->seq;
        if (auto* dn = std::get_if<pn::Done>(&*m)) {
            EXPECT_EQ(dn->id, 7u);
            EXPECT_EQ(dn->applied_seq, 2u);
            break;
        }
    }
    EXPECT_EQ(acked, 2u);
    EXPECT_TRUE(stdfs::exists(d.root / "a/f"));
    EXPECT_GT((*link)->bytes_sent(), 0u);
    EXPECT_GT((*link)->bytes_received(), 0u);
    // Nothing more comes: read_reply times out instead of blocking.
    auto none = (*link)->read_reply(std::chrono::milliseconds(50));
    ASSERT_TRUE(none.has_value());
    EXPECT_FALSE(none->has_value());
}

TEST(NativeLink, WrongPasswordIsAClearError) {
    ModuleDirs d;
    FakeDaemon daemon(AF_INET, d.module(), "right");
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/test", daemon.port()), secret_file(d.tmp, "wrong"), "s");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find("auth failed"), std::string::npos) << link.error().message;
    EXPECT_NE(link.error().message.find(fmt::format("alice@127.0.0.1:{}/test", daemon.port())), std::string::npos)
        << link.error().message;
    EXPECT_EQ(link.error().code, EACCES);
}

TEST(NativeLink, MissingPasswordWhenAuthIsRequired) {
    ModuleDirs d;
    FakeDaemon daemon(AF_INET, d.module(), "pw");
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/test", daemon.port()), "", "s");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find("requires a password"), std::string::npos) << link.error().message;
}

TEST(NativeLink, Ipv6Loopback) {
    UniqueFd probe(::socket(AF_INET6, SOCK_STREAM, 0));
    if (!probe) GTEST_SKIP() << "no IPv6";
    ModuleDirs d;
    FakeDaemon daemon(AF_INET6, d.module());
    auto link = MirrorLink::connect(fmt::format("rsync://[::1]:{}/test", daemon.port()), "", "s6");
    ASSERT_TRUE(link.has_value()) << link.error().message;
    EXPECT_TRUE((*link)->hello().caps & pn::kCapDelta);
}

TEST(NativeLink, ConnectionRefusedNamesThePeer) {
    // Bind then close a port so nothing listens there.
    UniqueFd s(::socket(AF_INET, SOCK_STREAM, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    int port = ntohs(a.sin_port);
    s.reset();
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/web", port), "", "s");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find(fmt::format("127.0.0.1:{}/web", port)), std::string::npos) << link.error().message;
    EXPECT_EQ(link.error().code, ECONNREFUSED);
}

TEST(NativeLink, SilentServerTimesOut) {
    ModuleDirs d;
    FakeDaemon daemon(AF_INET, d.module(), "", /*mute=*/true);
    repl::MirrorLinkOptions o;
    o.handshake_timeout = std::chrono::milliseconds(300);
    auto start = std::chrono::steady_clock::now();
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/test", daemon.port()), "", "s", o);
    ASSERT_FALSE(link.has_value());
    EXPECT_EQ(link.error().code, ETIMEDOUT);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(NativeLink, ShutdownWakesABlockedReceive) {
    ModuleDirs d;
    FakeDaemon daemon(AF_INET, d.module());
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/test", daemon.port()), "", "s");
    ASSERT_TRUE(link.has_value()) << link.error().message;
    std::thread t([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        (*link)->shutdown();
    });
    auto m = (*link)->receive();
    t.join();
    EXPECT_FALSE(m.has_value());
    EXPECT_FALSE((*link)->send(pn::Barrier{1, false}).has_value());
}

}  // namespace
}  // namespace sfs::testing
