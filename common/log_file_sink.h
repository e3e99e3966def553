// The log file sink: appends each line with one write(2) to a file that logrotate may move.
//
// Design note. rsyncd and most daemons an operator rotates with logrotate either reopen
// their log per connection or on a signal; a sink that kept its first fd would write to
// the rotated file forever (and to a deleted inode after `rotate 1`). This sink checks at
// most once per `check_interval` whether the path still names the file it writes to (same
// device and inode) and reopens it if not, so a plain logrotate stanza without postrotate
// works. One write(2) per line on an O_APPEND fd keeps lines whole when the daemon's forked
// connection processes log to the same file. A failed write is dropped (there is nowhere
// left to report it); logging never blocks or fails the caller.
#pragma once

#include <spdlog/sinks/base_sink.h>
#include <sys/types.h>

#include <chrono>
#include <mutex>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs {

class LogFileSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    // Opens (creates, 0644) `path` for appending; the error names the path.
    static Result<std::shared_ptr<LogFileSink>> open(
        const std::string& path, std::chrono::milliseconds check_interval = std::chrono::seconds(1));

    const std::string& path() const noexcept { return path_; }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override;
    void flush_() override {}  // every line is written through at once

private:
    LogFileSink(std::string path, std::chrono::milliseconds check_interval)
        : path_(std::move(path)), check_interval_(check_interval) {}
    int reopen() noexcept;               // 0 or errno
    void reopen_if_moved() noexcept;

    const std::string path_;
    const std::chrono::milliseconds check_interval_;
    UniqueFd fd_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    std::chrono::steady_clock::time_point next_check_{};
};

}  // namespace sfs
