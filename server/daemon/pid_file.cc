#include "server/daemon/pid_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/unique_fd.h"

namespace sfs::server {
namespace {

// The pid written in `path`, or 0.
pid_t read_pid(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return 0;
    char buf[32] = {};
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0) return 0;
    long v = std::strtol(buf, nullptr, 10);
    return v > 0 && v < (1L << 30) ? static_cast<pid_t>(v) : 0;
}

}  // namespace

Result<void> PidFile::create(const std::string& path) {
    if (pid_t old = read_pid(path); old > 0 && old != ::getpid() && (::kill(old, 0) == 0 || errno == EPERM))
        return fail(path + ": syncfsd already running with pid " + std::to_string(old));
    std::string tmp = path + ".tmp" + std::to_string(::getpid());
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (!fd) return fail(tmp + ": cannot create pid file: " + std::strerror(errno), errno);
    std::string text = std::to_string(::getpid()) + "\n";
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
        int e = errno;
        ::unlink(tmp.c_str());
        return fail(tmp + ": write: " + std::strerror(e), e);
    }
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        return fail(path + ": cannot create pid file: " + std::strerror(e), e);
    }
    path_ = path;
    return {};
}

void PidFile::remove() noexcept {
    if (path_.empty()) return;
    if (read_pid(path_) == ::getpid()) ::unlink(path_.c_str());
    path_.clear();
}

}  // namespace sfs::server
