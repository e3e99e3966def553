// Subprocess helpers for the CLI tests: run a command with a time limit and capture its
// output, find the syncfs daemon serving a mountpoint, wait for mounts to appear/vanish.
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sfs::fs::test {

struct RunResult {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

// Runs `command` through /bin/sh with `timeout` seconds (timeout(1) kills it after).
inline RunResult run(const std::string& command, int timeout = 30) {
    RunResult r;
    std::string full = "timeout -k 2 " + std::to_string(timeout) + " " + command + " 2>&1";
    FILE* p = ::popen(full.c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

// The /proc/mounts line whose mountpoint is `mnt`, or "".
inline std::string mount_line(const std::string& mnt) {
    std::ifstream in("/proc/mounts");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string src, point;
        ls >> src >> point;
        if (point == mnt) return line;
    }
    return "";
}

inline bool wait_for(const std::function<bool()>& cond, int ms = 10000) {
    for (int i = 0; i < ms / 10; ++i) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
}

// pids of processes whose command line contains `arg` as one argument and whose
// executable name is syncfs.
inline std::vector<pid_t> syncfs_pids_with(const std::string& arg) {
    std::vector<pid_t> out;
    DIR* d = ::opendir("/proc");
    if (!d) return out;
    while (struct dirent* e = ::readdir(d)) {
        pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
        if (pid <= 0) continue;
        std::ifstream in("/proc/" + std::string(e->d_name) + "/cmdline");
        std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::vector<std::string> args;
        std::string cur;
        for (char c : cmdline) {
            if (c == '\0') {
                args.push_back(cur);
                cur.clear();
            } else {
                cur.push_back(c);
            }
        }
        if (args.empty() || args[0].find("syncfs") == std::string::npos) continue;
        for (const auto& a : args) {
            if (a == arg) {
                out.push_back(pid);
                break;
            }
        }
    }
    ::closedir(d);
    return out;
}

inline bool process_gone(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string s;
    std::getline(in, s);
    if (s.empty()) return true;
    auto close = s.rfind(')');
    return close != std::string::npos && close + 2 < s.size() && s[close + 2] == 'Z';
}

}  // namespace sfs::fs::test
