// Test harness for syncfsd integration tests: a temp dir, a free loopback port, the real
// syncfsd binary started with a temp config, and the real rsync client run with a timeout.
// Everything is cleaned up in destructors, so a failing assertion leaves no process behind.
#pragma once

#include "tests/support/loopback.h"
#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace sfs::test {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/syncfsd-test.XXXXXX";
        char* p = ::mkdtemp(tmpl);
        if (!p) throw std::runtime_error("mkdtemp failed");
        path_ = p;
        ::chmod(p, 0755);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::string& text, mode_t mode = 0644) {
    {
        std::ofstream f(path, std::ios::trunc);
        f << text;
    }
    ::chmod(path.c_str(), mode);
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

using testsupport::free_port;

// Connects to [::1]:port; -1 on failure.
inline int connect_port6(int port) {
    int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    a.sin6_addr = in6addr_loopback;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Connects to 127.0.0.1:port; -1 on failure.
inline int connect_port(int port, const char* from = nullptr) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (from) {
        sockaddr_in b{};
        b.sin_family = AF_INET;
        inet_pton(AF_INET, from, &b.sin_addr);
        ::bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Reads one '\n'-terminated line with a 10 s bound; nullopt on EOF/timeout.
inline std::optional<std::string> read_line(int fd) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
        char c;
        if (::read(fd, &c, 1) != 1) return std::nullopt;
        if (c == '\n') return line;
        line.push_back(c);
    }
}

inline void send_text(int fd, const std::string& s) {
    ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size()));
}

struct RunResult {
    int status = -1;  // exit code
    std::string output;
};

// Runs a shell command with a 60 s bound, stdout+stderr captured.
inline RunResult run(const std::string& cmd) {
    RunResult r;
    std::string full = "timeout 60 " + cmd + " 2>&1";
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

// Polls `path` until it contains `text`, bounded by `limit` (a log line written by another
// process after our client returned). Returns whether it appeared.
inline bool file_gets(const std::string& path, const std::string& text,
                      std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (read_file(path).find(text) != std::string::npos) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// A syncfsd process in the foreground (--no-detach) on a free 127.0.0.1 port.
class Daemon {
public:
    // `address`: the --address to listen on ("127.0.0.1" or "::1").
    Daemon(const TempDir& dir, const std::string& config_text, std::vector<std::string> extra = {},
           std::string address = "127.0.0.1")
        : address_(std::move(address)) {
        config_ = dir / "syncfsd.conf";
        log_ = dir / "syncfsd.log";
        write_file(config_, config_text);
        for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) start(extra);
    }
    ~Daemon() { stop(); }

    int port() const { return port_; }
    pid_t pid() const { return pid_; }
    const std::string& config_path() const { return config_; }
    std::string log() const { return read_file(log_); }
    // Waits up to 30 s for `text` to appear in the log: connection processes write their
    // line after the client has already seen the reply (and exited), and on a loaded
    // machine that can take seconds. Returns whether it appeared.
    bool log_has(const std::string& text) const { return file_gets(log_, text); }
    std::string url(const std::string& rest = "") const {
        return "rsync://127.0.0.1:" + std::to_string(port_) + "/" + rest;
    }

    // Sends `sig` and waits up to 20 s for the exit; returns the exit code (-1 on timeout/signal).
    int signal_and_wait(int sig) {
        if (pid_ < 0) return -1;
        ::kill(pid_, sig);
        for (int i = 0; i < 200; ++i) {
            int st;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                pid_ = -1;
                return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return -1;
    }

    void stop() {
        if (pid_ < 0) return;
        if (signal_and_wait(SIGTERM) == -1 && pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
    }

private:
    void start(const std::vector<std::string>& extra) {
        port_ = free_port();
        std::vector<std::string> args = {SYNCFSD_BIN, "--config", config_, "--no-detach", "--port",
                                         std::to_string(port_), "--address", address_, "--log-file", log_};
        args.insert(args.end(), extra.begin(), extra.end());
        pid_t pid = testsupport::spawn_logged(args, log_ + ".stderr");
        pid_ = pid;
        for (int i = 0; i < 400; ++i) {
            int st;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {  // died: port taken or bad config
                pid_ = -1;
                return;
            }
            int fd = address_ == "::1" ? connect_port6(port_) : connect_port(port_);
            if (fd >= 0) {
                ::close(fd);
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    std::string address_;
    std::string config_;
    std::string log_;
    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace sfs::test
