// Protocol fuzzing against a live daemon: record what a real client sends (RecordingProxy),
// mutate it with a seeded generator (mutate), and replay it as a hostile client (replay).
// Used by the rsync-daemon and native-protocol fuzz tests.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/server/daemon_harness.h"

namespace sfs::test {

using FuzzClock = std::chrono::steady_clock;

// Every connection process writes one "connection from" line when it ends: counts them in
// the daemon's log as they appear (reading only what was added since the last call).
class EndedConnections {
public:
    explicit EndedConnections(std::string log_path) : path_(std::move(log_path)) {}
    // Waits up to `limit` until at least `count` connections have ended.
    bool wait_for(std::size_t count, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
        auto deadline = FuzzClock::now() + limit;
        for (;;) {
            std::ifstream f(path_, std::ios::binary);
            f.seekg(static_cast<std::streamoff>(offset_));
            std::string line;
            while (std::getline(f, line)) {
                if (f.eof()) break;  // a line still being written: read it again next time
                offset_ += line.size() + 1;
                if (line.find("connection from ") != std::string::npos) ++ended_;
            }
            if (ended_ >= count) return true;
            if (FuzzClock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }

private:
    std::string path_;
    std::size_t offset_ = 0;
    std::size_t ended_ = 0;
};

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
        auto deadline = FuzzClock::now() + std::chrono::seconds(60);
        while ((c_open || s_open) && FuzzClock::now() < deadline) {
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
// closes its sending side and reads until the daemon hangs up or `limit` passed (then it
// closes: a request can legitimately keep the daemon busy). Returns how long that took.
inline std::chrono::milliseconds replay(int port, const std::string& bytes,
                                        std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    auto start = FuzzClock::now();
    int fd = connect_port(port);
    if (fd < 0) return std::chrono::milliseconds(-1);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    std::size_t off = 0;
    bool write_open = true;
    char buf[65536];
    auto deadline = start + limit;
    while (FuzzClock::now() < deadline) {
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
    return std::chrono::duration_cast<std::chrono::milliseconds>(FuzzClock::now() - start);
}

// One seeded mutation of a recorded session. The first `keep` bytes (the text handshake up
// to the module name) are left alone half of the time so that mutations reach the binary
// protocol; the other half attack the handshake itself.
inline std::string mutate(const std::string& in, std::size_t keep, std::mt19937_64& rng) {
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

}  // namespace sfs::test
