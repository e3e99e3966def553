// Hostile and truncated protocol bytes against the real syncfsd: real rsync sessions are
// recorded through an in-test loopback proxy (push and pull, plain and -z, an auth module),
// then replayed with seeded mutations - cut at a random byte, random bytes overwritten,
// random bytes inserted, huge integers spliced in. Afterwards no connection process may
// have died of a signal, nothing may exist outside the module, the daemon must still serve
// a real transfer correctly, and each bad session must have ended within its time bound.
#include <sys/stat.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <random>

#include "daemon_harness.h"

namespace sfs::test {
namespace {

namespace stdfs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Listens on a free loopback port, forwards one connection at a time to `target_port` and
// records what the client sent.
class RecordingProxy {
public:
    explicit RecordingProxy(int target_port) : target_port_(target_port) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listener_, 4) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            throw std::runtime_error("proxy listen failed");
        }
        port_ = ntohs(a.sin_port);
    }
    ~RecordingProxy() { ::close(listener_); }
    int port() const { return port_; }

    // Runs `client_cmd` (which connects to port()) and returns the client's bytes.
    std::string record(const std::string& client_cmd, RunResult& result) {
        std::string sent;
        std::thread pump([&] { sent = pump_one(); });
        result = run(client_cmd);
        pump.join();
        return sent;
    }

private:
    std::string pump_one() {
        std::string sent;
        pollfd lp{listener_, POLLIN, 0};
        if (::poll(&lp, 1, 30000) <= 0) return sent;
        int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        int s = connect_port(target_port_);
        if (c < 0 || s < 0) {
            ::close(c);
            ::close(s);
            return sent;
        }
        bool c_open = true, s_open = true;
        char buf[65536];
        auto deadline = Clock::now() + std::chrono::seconds(60);
        while ((c_open || s_open) && Clock::now() < deadline) {
            pollfd p[2] = {{c_open ? c : -1, POLLIN, 0}, {s_open ? s : -1, POLLIN, 0}};
            if (::poll(p, 2, 1000) < 0) break;
            if (c_open && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t n = ::read(c, buf, sizeof buf);
                if (n <= 0) {
                    c_open = false;
                    ::shutdown(s, SHUT_WR);
                } else {
                    sent.append(buf, static_cast<std::size_t>(n));
                    if (::write(s, buf, static_cast<std::size_t>(n)) != n) c_open = false;
                }
            }
            if (s_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
                ssize_t n = ::read(s, buf, sizeof buf);
                if (n <= 0) {
                    s_open = false;
                    ::shutdown(c, SHUT_WR);
                } else if (::write(c, buf, static_cast<std::size_t>(n)) != n) {
                    s_open = false;
                }
            }
        }
        ::close(c);
        ::close(s);
        return sent;
    }

    int target_port_;
    int listener_ = -1;
    int port_ = 0;
};

// Sends `bytes` to the daemon as one client would (in pieces, without waiting for replies),
// closes its sending side and reads until the daemon hangs up. Returns how long that took.
std::chrono::milliseconds replay(int port, const std::string& bytes) {
    auto start = Clock::now();
    int fd = connect_port(port);
    if (fd < 0) return std::chrono::milliseconds(-1);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    std::size_t off = 0;
    bool write_open = true;
    char buf[65536];
    auto deadline = start + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
        pollfd p{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
        if (::poll(&p, 1, 200) < 0) break;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EAGAIN)) break;  // the daemon ended the session
        }
        if (write_open && (p.revents & POLLOUT)) {
            ssize_t n = ::send(fd, bytes.data() + off, std::min<std::size_t>(bytes.size() - off, 4096), MSG_NOSIGNAL);
            if (n > 0) off += static_cast<std::size_t>(n);
            if (n < 0 && errno != EAGAIN) write_open = false;
            if (off == bytes.size()) {
                ::shutdown(fd, SHUT_WR);
                write_open = false;
            }
        }
    }
    ::close(fd);
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// One seeded mutation of a recorded session. The first `keep` bytes (the text handshake up
// to the module name) are left alone half of the time so that mutations reach the binary
// protocol; the other half attack the handshake itself.
std::string mutate(const std::string& in, std::size_t keep, std::mt19937_64& rng) {
    std::string s = in;
    if (s.empty()) return s;
    auto pick = [&](std::size_t lo, std::size_t hi) {
        return hi <= lo ? lo : std::uniform_int_distribution<std::size_t>(lo, hi - 1)(rng);
    };
    std::size_t from = (rng() & 1) ? std::min(keep, s.size() - 1) : 0;
    switch (rng() % 5) {
        case 0:  // truncated at any byte
            s.resize(pick(from, s.size()));
            break;
        case 1:  // a few bytes overwritten
            for (int i = 0, n = 1 + static_cast<int>(rng() % 8); i < n; ++i) s[pick(from, s.size())] = static_cast<char>(rng());
            break;
        case 2: {  // random bytes inserted
            std::string junk(1 + rng() % 64, '\0');
            for (char& c : junk) c = static_cast<char>(rng());
            s.insert(pick(from, s.size()), junk);
            break;
        }
        case 3: {  // a huge or negative 32-bit integer (lengths, counts, indices) spliced in
            static constexpr std::uint32_t kValues[] = {0xffffffffu, 0x7fffffffu, 0x80000000u, 0x00ffffffu, 0xfffffff0u};
            std::uint32_t v = kValues[rng() % std::size(kValues)];
            std::size_t at = pick(from, s.size());
            std::memcpy(s.data() + at, &v, std::min<std::size_t>(4, s.size() - at));
            break;
        }
        default: {  // a slice of the session repeated (replayed messages)
            std::size_t a = pick(from, s.size());
            std::size_t len = std::min<std::size_t>(s.size() - a, 1 + rng() % 512);
            s.insert(pick(from, s.size()), s.substr(a, len));
            break;
        }
    }
    return s;
}

TEST(DaemonFuzz, MutatedRealSessionsNeverCrashEscapeOrWedgeTheDaemon) {
    TempDir dir;
    const std::string web = dir / "top/web";
    stdfs::create_directories(web);
    stdfs::create_directories(dir / "top/auth");
    stdfs::create_directories(dir / "src/sub");
    write_file(dir / "secrets", "u:pw\n", 0600);
    write_file(dir / "pw", "pw\n", 0600);
    std::string big(200000, 'x');
    for (std::size_t i = 0; i < big.size(); i += 7) big[i] = static_cast<char>('a' + i % 26);
    write_file(dir / "src/big", big);
    write_file(dir / "src/sub/small", "small file\n");
    ASSERT_EQ(::symlink("sub/small", (dir / "src/link").c_str()), 0);
    Daemon daemon(dir,
                  "use chroot = no\nuid = root\ngid = root\ntimeout = 15\n"
                  "[web]\npath = " + web + "\nread only = no\nmunge symlinks = no\n"
                  "[auth]\npath = " + (dir / "top/auth") + "\nread only = no\nauth users = u\nsecrets file = " +
                      (dir / "secrets") + "\n");
    ASSERT_GT(daemon.pid(), 0) << daemon.log();

    // Record real sessions: a push (file list + delta data), a pull (the generator's
    // checksums), compressed variants, and an authenticated push.
    RecordingProxy proxy(daemon.port());
    const std::string url = "rsync://127.0.0.1:" + std::to_string(proxy.port());
    struct Recorded {
        std::string bytes;
        std::size_t keep;
    };
    std::vector<Recorded> sessions;
    const std::vector<std::string> commands = {
        "rsync -a " + (dir / "src/") + " " + url + "/web/",
        "rsync -az --checksum " + (dir / "src/") + " " + url + "/web/copy/",
        "rsync -a " + url + "/web/ " + (dir / "pulled/"),
        "rsync -az " + url + "/web/ " + (dir / "pulled-z/"),
        "rsync -a --password-file=" + (dir / "pw") + " " + (dir / "src/") + " rsync://u@127.0.0.1:" +
            std::to_string(proxy.port()) + "/auth/",
    };
    for (const auto& cmd : commands) {
        RunResult r;
        std::string bytes = proxy.record(cmd, r);
        ASSERT_EQ(r.status, 0) << cmd << "\n" << r.output;
        ASSERT_GT(bytes.size(), 20u) << cmd;
        // Keep the greeting and the module line: everything up to the second '\n'.
        std::size_t nl = bytes.find('\n');
        nl = nl == std::string::npos ? 0 : bytes.find('\n', nl + 1);
        sessions.push_back({bytes, nl == std::string::npos ? 0 : nl + 1});
    }
    stdfs::remove_all(web);
    stdfs::create_directories(web);

    std::mt19937_64 rng(0x5eed5);
    // The authenticated recording is replayed rarely: a replayed response never matches the
    // fresh challenge, and the daemon delays every failed login by 1-2 s.
    constexpr int kSessions = 400;
    long worst_ms = 0;
    for (int i = 0; i < kSessions; ++i) {
        const std::size_t unauthenticated = sessions.size() - 1;
        const Recorded& rec = i % 40 == 39 ? sessions.back() : sessions[static_cast<std::size_t>(i) % unauthenticated];
        auto took = replay(daemon.port(), mutate(rec.bytes, rec.keep, rng));
        ASSERT_GE(took.count(), 0) << "the daemon stopped accepting at session " << i << "\n" << daemon.log();
        worst_ms = std::max<long>(worst_ms, static_cast<long>(took.count()));
    }
    // Each session ended because the daemon hung up, well before the 20 s replay bound
    // (the module's `timeout = 15` is the daemon's own bound for a silent peer).
    EXPECT_LT(worst_ms, 19000);

    // No connection process died of a signal (a crash: the daemon logs each one).
    EXPECT_EQ(daemon.log().find("killed by signal"), std::string::npos) << daemon.log();
    // Nothing was created outside the modules.
    for (const auto& e : stdfs::directory_iterator(dir / "top")) {
        std::string name = e.path().filename();
        EXPECT_TRUE(name == "web" || name == "auth") << "created outside the modules: " << e.path();
    }
    // The daemon still serves a real transfer, byte-exact.
    ::kill(daemon.pid(), 0);
    ASSERT_EQ(::waitpid(daemon.pid(), nullptr, WNOHANG), 0) << "syncfsd exited\n" << daemon.log();
    auto r = run("rsync -a " + (dir / "src/") + " " + daemon.url("web/after/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(web + "/after/big"), big);
    EXPECT_EQ(read_file(web + "/after/sub/small"), "small file\n");
}

}  // namespace
}  // namespace sfs::test
