// End-to-end harness: a real syncfsd on a free 127.0.0.1 port (restartable on the same
// port), a real syncfs FUSE mount replicating to it, syncfsctl, and the real rsync as the
// judge of convergence. Every process and mount is cleaned up in destructors, so a failed
// assertion leaves nothing behind.
#pragma once

#include "tests/support/loopback.h"
#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace sfs::e2e {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;

struct RunResult {
    int status = -1;
    std::string output;
};

inline RunResult sh(const std::string& cmd) {
    RunResult r;
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

inline void write_file(const std::string& path, const std::string& text, mode_t mode = 0644) {
    {
        std::ofstream f(path, std::ios::trunc | std::ios::binary);
        f << text;
    }
    ::chmod(path.c_str(), mode);
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

using testsupport::free_port;

inline bool port_open(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

inline pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
    return testsupport::spawn_logged(args, log, /*own_group=*/true);
}

using testsupport::wait_exit;

// Directories of one test plus the syncfsd config.
struct Env {
    std::string root, src, mnt, mirror, dstate, state, secrets, client_secret;
    int port = 0;
    explicit Env(const std::string& module_path = "") {
        char tmpl[] = "/tmp/syncfs-e2e.XXXXXX";
        root = ::mkdtemp(tmpl);
        ::chmod(root.c_str(), 0755);
        src = root + "/src";
        mnt = root + "/mnt";
        mirror = module_path.empty() ? root + "/mirror" : module_path;
        dstate = root + "/syncfsd-state";
        state = root + "/state";
        for (auto& d : {src, mnt, mirror, dstate}) stdfs::create_directories(d);
        secrets = root + "/syncfsd.secrets";
        write_file(secrets, "repl:s3cret\n", 0600);
        client_secret = root + "/client.secret";
        write_file(client_secret, "s3cret\n", 0600);
        port = free_port();
        write_file(root + "/syncfsd.conf",
                   "use chroot = no\n"
                   "munge symlinks = no\n"
                   "[web]\n"
                   "  path = " + mirror + "\n"
                   "  read only = no\n"
                   "  uid = 0\n"
                   "  gid = 0\n"
                   "  auth users = repl\n"
                   "  secrets file = " + secrets + "\n"
                   "  syncfs state dir = " + dstate + "\n");
    }
    ~Env() {
        std::error_code ec;
        stdfs::remove_all(root, ec);
    }
    std::string url() const { return "rsync://repl@127.0.0.1:" + std::to_string(port) + "/web"; }
    // rsync's verdict: empty when the mirror equals SOURCE (names, types, content, modes,
    // owners, mtimes, symlinks, hardlinks, ACLs, xattrs).
    std::string diff() const { return sh("rsync -aHAXnc --delete -i " + src + "/ " + mirror + "/").output; }
};

// syncfsd in the foreground; start() again after kill9() uses the same port.
class Syncfsd {
public:
    explicit Syncfsd(const Env& env) : env_(env) { start(); }
    ~Syncfsd() { kill9(); }
    void start() {
        for (int attempt = 0; attempt < 50; ++attempt) {
            pid_ = spawn({SYNCFSD_BIN, "--config", env_.root + "/syncfsd.conf", "--no-detach", "--port",
                          std::to_string(env_.port), "--address", "127.0.0.1", "--log-file", env_.root + "/syncfsd.log"},
                         env_.root + "/syncfsd.stderr");
            for (int i = 0; i < 100; ++i) {
                if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                    pid_ = -1;
                    break;
                }
                if (port_open(env_.port)) return;
                std::this_thread::sleep_for(20ms);
            }
            if (pid_ > 0) kill9();
            std::this_thread::sleep_for(100ms);  // the port may still be in TIME_WAIT
        }
        ADD_FAILURE() << "syncfsd did not start: " << read_file(env_.root + "/syncfsd.stderr");
    }
    // The daemon and its per-connection children (its process group): like a crash or
    // `systemctl kill` of the whole service.
    void kill9() {
        if (pid_ <= 0) return;
        ::kill(-pid_, SIGKILL);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    std::string log() const { return read_file(env_.root + "/syncfsd.log"); }

private:
    const Env& env_;
    pid_t pid_ = -1;
};

// syncfs SOURCE MOUNTPOINT -f -o mirror=...,secrets=...,state=...[,extra]
class Mount {
public:
    Mount(const Env& env, std::string extra = {}) : env_(env), extra_(std::move(extra)) { start(); }
    ~Mount() {
        if (pid_ > 0) unmount();
    }
    void start() {
        std::string opts = "mirror=" + env_.url() + ",secrets=" + env_.client_secret + ",state=" + env_.state;
        if (!extra_.empty()) opts += "," + extra_;
        pid_ = spawn({SYNCFS_BIN, env_.src, env_.mnt, "-f", "-o", opts}, env_.root + "/syncfs.log");
        for (int i = 0; i < 500; ++i) {
            // Mounted and answering on its control socket (the replicator starts just after
            // the mount appears; a `syncfsctl wait` before that fails to connect).
            if (mounted() && sh(std::string(SYNCFSCTL) + " status " + env_.mnt).status == 0) return;
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        ADD_FAILURE() << "syncfs did not mount: " << log();
    }
    bool mounted() const {
        std::ifstream m("/proc/self/mounts");
        std::string line;
        while (std::getline(m, line)) {
            if (line.find(" " + env_.mnt + " fuse") != std::string::npos) return true;
        }
        return false;
    }
    void unmount() {
        auto um = sh("fusermount3 -u " + env_.mnt);
        if (!wait_exit(pid_, 30s)) {
            ADD_FAILURE() << "syncfs did not exit after umount (fusermount3: " << um.status << " " << um.output << ", still mounted: " << mounted() << ")\n" << sh("fuser -vm " + env_.mnt + " 2>&1").output << log();
            kill9();
            return;
        }
        pid_ = -1;
    }
    // kill -9 of the daemon; the dead FUSE mount is detached.
    void kill9() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
            pid_ = -1;
        }
        sh("fusermount3 -u -z " + env_.mnt);
    }
    std::string log() const { return read_file(env_.root + "/syncfs.log"); }
    RunResult wait(int seconds = 120) const {
        return sh(std::string(SYNCFSCTL) + " wait --timeout " + std::to_string(seconds) + " " + env_.mnt);
    }
    std::string status_json() const { return sh(std::string(SYNCFSCTL) + " status --json " + env_.mnt).output; }
    std::uint64_t bytes_sent() const {
        const std::string j = status_json();
        auto k = j.find("\"bytes_sent\": ");
        return k == std::string::npos ? 0 : std::stoull(j.substr(k + 14));
    }

private:
    const Env& env_;
    std::string extra_;
    pid_t pid_ = -1;
};

// One field of `syncfsctl status --json` ("" when absent); the first occurrence, so for a
// per-mirror field the first mirror's.
inline std::string status_field(const Mount& m, const std::string& key) {
    const std::string j = m.status_json();
    const auto k = j.find("\"" + key + "\": ");
    if (k == std::string::npos) return {};
    auto v = j.substr(k + key.size() + 4);
    if (!v.empty() && v[0] == '"') return v.substr(1, v.find('"', 1) - 1);
    return v.substr(0, v.find_first_of(",\n}"));
}

}  // namespace sfs::e2e
