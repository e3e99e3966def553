// Child processes for the tests that start real daemons (syncfs, syncfsd).
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace sfs::testsupport {

// fork + exec of args[0] with stdin on /dev/null and stdout/stderr appended to `log`.
// The child closes every other fd before exec: a test thread may have a file on a FUSE
// mount open at the moment of the fork (ofstream does not set O_CLOEXEC), and a daemon
// that inherited it would keep the mount busy so that `fusermount3 -u` fails with EBUSY.
// own_group: the child leads a new process group (so a test can signal it and its children).
inline pid_t spawn_logged(const std::vector<std::string>& args, const std::string& log, bool own_group = false) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (own_group) ::setpgid(0, 0);
        int null = ::open("/dev/null", O_RDWR);
        int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ::dup2(null, 0);
        ::dup2(out, 1);
        ::dup2(out, 2);
        ::close_range(3, ~0U, 0);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

// Reaps pid if it exits within timeout.
inline bool wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (::waitpid(pid, nullptr, WNOHANG) == pid) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

}  // namespace sfs::testsupport
