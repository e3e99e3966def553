#include "common/log_file_sink.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sfs {

Result<std::shared_ptr<LogFileSink>> LogFileSink::open(const std::string& path,
                                                       std::chrono::milliseconds check_interval) {
    std::shared_ptr<LogFileSink> sink(new LogFileSink(path, check_interval));
    if (int e = sink->reopen(); e != 0) return fail(path + ": cannot open log file: " + std::strerror(e), e);
    return sink;
}

int LogFileSink::reopen() noexcept {
    UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644));
    if (!fd) return errno;
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return errno;
    fd_ = std::move(fd);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    next_check_ = std::chrono::steady_clock::now() + check_interval_;
    return 0;
}

void LogFileSink::reopen_if_moved() noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_check_) return;
    next_check_ = now + check_interval_;
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) return;
    // Moved or deleted (rotated): start a new file at the path. Should that fail (the
    // directory is gone or not writable), keep writing where we did.
    reopen();
}

void LogFileSink::sink_it_(const spdlog::details::log_msg& msg) {
    reopen_if_moved();
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_.get(), p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // disk full or the like: the line is dropped, the caller goes on
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

}  // namespace sfs
