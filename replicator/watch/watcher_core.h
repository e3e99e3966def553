// What both backends share: the reader thread, filtering (exclude, echo), status counters
// and the rules that turn moves into changes. A backend only reads its kernel queue and
// calls the report_* functions on the watcher thread.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <set>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/unique_fd.h"
#include "replicator/watch/echo_filter.h"
#include "replicator/watch/exclude.h"
#include "replicator/watch/watcher.h"

namespace sfs::repl::watch {

class WatcherCore : public Watcher {
public:
    using Clock = std::chrono::steady_clock;

    ~WatcherCore() override;

    std::string mode() const override { return mode_; }
    WatchStatus status() const override;
    void stop() noexcept override;
    bool needs_echo_hints() const noexcept override { return echo_.has_value(); }
    void expect_own_change(std::string_view path) noexcept override;
    bool caught_up(Clock::time_point deadline) override;

protected:
    // `root` is the watcher's own fd on SOURCE (O_RDONLY directory).
    WatcherCore(std::string mode, UniqueFd root, std::string source_path, WatchOptions options,
                OutsideChangeSink& sink, bool echo_hints);

    // Spawns the reader thread; call once the kernel side is armed.
    Result<void> start_thread();

    // --- backend hooks, all called on the watcher thread ---
    // The fd to poll for events (may change between calls, e.g. after an inotify rebuild).
    virtual int kernel_fd() const noexcept = 0;
    virtual void on_readable() noexcept = 0;
    // When a pending move must be resolved, if any.
    virtual std::optional<Clock::time_point> next_deadline() const noexcept { return std::nullopt; }
    virtual void on_deadline(Clock::time_point /*now*/) noexcept {}
    // Whether a change read from the kernel is still held (an unpaired move waiting for
    // its partner): caught_up() waits until it is delivered.
    virtual bool holds_changes() const noexcept { return false; }

    // --- reporting, watcher thread only ---
    // Delivers `change` unless excluded or syncfs's own echo. Consecutive identical
    // Modified/Attrib changes within one read batch are delivered once. With echo hints
    // (inotify), the path's state is read now and the change is held for
    // options.echo_delay, so an announcement made just after syncfs's own syscall can
    // still claim it; it is dropped only when the state then and now is one syncfs's own
    // change left (echo_filter.h).
    void report(OutsideChange change);
    // Delivers Overflow(path) (never filtered), counts it and logs `reason`.
    void report_overflow(const std::string& path, const std::string& reason);
    // A move seen by the backend. Missing `from`: moved in from outside SOURCE (or its
    // origin is unknown); missing `to`: moved out. Moved-in directories are listed
    // (report_contents) since their entries produce no events of their own.
    void report_move(const std::optional<std::string>& from, const std::optional<std::string>& to,
                     bool is_dir);
    // Reports every entry below directory `path` as Created/DirCreated. If `path` is gone
    // already (moved on before it could be listed), it is remembered: when its later
    // rename is reported the new name is listed instead; its removal forgets it.
    void report_contents(const std::string& path);
    void record_error(const std::string& message);
    void end_batch() noexcept { last_reported_.reset(); }

    bool excluded(const std::string& path) const { return exclude_.excluded(path); }
    int root_fd() const noexcept { return root_.get(); }
    const std::string& source_path() const noexcept { return source_path_; }
    const WatchOptions& options() const noexcept { return options_; }

    std::atomic<std::uint64_t> events_seen_{0};
    std::atomic<std::uint64_t> own_dropped_{0};
    std::atomic<std::uint64_t> watched_dirs_{0};

private:
    struct Delayed {
        Clock::time_point due;
        OutsideChange change;
        // Echo filtering: the state of path (and path2 of a rename) when the event was read.
        NodeState seen;
        NodeState seen2;
    };
    // True when `d` is syncfs's own echo: the path's state when the event was read and now
    // are both states that syncfs's own changes left (echo_filter.h).
    bool is_echo(const Delayed& d);
    void run() noexcept;
    void deliver(OutsideChange change);
    void flush_delayed(Clock::time_point now) noexcept;

    const std::string mode_;
    UniqueFd root_;
    const std::string source_path_;
    const WatchOptions options_;
    OutsideChangeSink& sink_;
    const ExcludeList exclude_;
    mutable std::optional<EchoFilter> echo_;
    UniqueFd stop_fd_;  // eventfd: written by stop()
    UniqueFd kick_fd_;  // eventfd: written by caught_up() to wake the reader
    std::atomic<std::uint64_t> kicks_{0};        // caught_up() calls so far
    std::atomic<std::uint64_t> drained_kick_{0};  // kicks_ seen at the last empty, nothing-held check
    std::thread thread_;
    std::mutex stop_mutex_;
    std::optional<OutsideChange> last_reported_;  // watcher thread only
    std::deque<Delayed> delayed_;                 // watcher thread only; echo-hint mode
    std::set<std::string> unlisted_;              // watcher thread only; see report_contents

    std::atomic<std::uint64_t> reported_{0};
    std::atomic<std::uint64_t> overflows_{0};
    std::atomic<std::uint64_t> errors_{0};
    std::atomic<bool> running_{false};
    mutable std::mutex error_mutex_;
    std::string last_error_;  // guarded by error_mutex_
};

}  // namespace sfs::repl::watch
