// The fallback watcher: notices changes made to SOURCE without going through the mount.
//
// Two backends behind one interface:
//  - "fanotify": one filesystem-wide mark on SOURCE's filesystem (root only). Every event
//    carries the pid of the process that made the change, so syncfs's own changes (made by
//    its FUSE threads, pid = ignore_pid) are dropped exactly. No per-directory watches.
//  - "inotify": a watch on every directory of SOURCE. inotify cannot tell who made a change:
//    the caller announces its own changes with expect_own_change() (see docs/watcher.md).
// Backend::Auto picks fanotify when it can be set up, else inotify.
//
// Threading: start() spawns one thread that reads the kernel queue and calls the sink.
// status() and expect_own_change() may be called from any thread. stop() (also run by the
// destructor) joins the thread; no sink call happens after it returns.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "replicator/watch/outside_change.h"

namespace sfs::repl::watch {

enum class Backend : std::uint8_t { Auto, Fanotify, Inotify };

struct WatchOptions {
    // Changes made by this process are syncfs's own (fanotify reports the tgid). 0 = none.
    pid_t ignore_pid = 0;
    Backend backend = Backend::Auto;
    // -o exclude=PATTERN: fnmatch patterns. A pattern with a '/' matches the whole relative
    // path, one without matches any single path component (like rsync). Excluded
    // directories are not watched and nothing below them is reported.
    std::vector<std::string> exclude;
    // An unpaired move-out is reported as Deleted after this window.
    std::chrono::milliseconds move_pair_window{50};
    // inotify mode: how long an expect_own_change() announcement can claim events on a path
    // (only while the path is in the state an own change left, see echo_filter.h),
    // and how long changes are held before that check (so an announcement made right after
    // syncfs's own syscall, e.g. from ChangeSink::on_change, still catches the echo).
    std::chrono::milliseconds echo_ttl{2000};
    std::chrono::milliseconds echo_delay{100};
    // inotify mode: use at most this many watches (0 = only the kernel's limit). Reaching it
    // is handled exactly like the kernel's ENOSPC: Overflow for the subtree, error in status.
    std::size_t max_inotify_watches = 0;
    // inotify mode: how often subtrees left unwatched by the limit are tried again (each try
    // delivers an Overflow of the subtree, so they are reconciled at this pace).
    std::chrono::milliseconds rewatch_interval{30000};
    // fanotify mode: pair MOVED_FROM/MOVED_TO even when the kernel has FAN_RENAME (tests the
    // path used on kernels before 5.17).
    bool fanotify_without_rename = false;
    // Fault injection for tests (docs/watcher.md "Fault injection"; empty = off). While the
    // file `fault_hold_file` exists the reader does not read the kernel queue, so a burst
    // overflows it for certain. When `fault_fail_file` appears, the reader removes it and
    // ends as on a read error (Overflow(""), running = false).
    std::string fault_hold_file;
    std::string fault_fail_file;
};

struct WatchStatus {
    std::string mode;                  // "fanotify" or "inotify"
    std::uint64_t events_seen = 0;     // kernel events read
    std::uint64_t changes_reported = 0;
    std::uint64_t own_dropped = 0;     // syncfs's own changes dropped (pid or expect_own_change)
    std::uint64_t overflows = 0;       // Overflow changes delivered (queue overflow, watch limit, errors)
    std::uint64_t errors = 0;
    std::uint64_t watched_dirs = 0;    // inotify: watches held; fanotify: 0
    bool running = false;              // false once the reader thread ended (after an error)
    std::string last_error;            // empty while nothing went wrong
};

class Watcher {
public:
    // Starts watching the directory `source_dir_fd` (borrowed; the watcher keeps its own
    // duplicate). `source_path` is used in messages only. The sink must outlive the watcher.
    static Result<std::unique_ptr<Watcher>> start(int source_dir_fd, std::string source_path,
                                                  WatchOptions options, OutsideChangeSink& sink);

    virtual ~Watcher() = default;
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    virtual std::string mode() const = 0;
    virtual WatchStatus status() const = 0;
    // Delivers the changes still held (echo delay) and joins the reader thread. Idempotent.
    // Never call it from the sink (the reader thread would join itself).
    virtual void stop() noexcept = 0;

    // Barrier for `syncfsctl wait`: returns true once every event the kernel queued before
    // the call has been read and every change from it delivered to the sink (nothing held
    // for echo filtering or move pairing). False on timeout or when the reader is not
    // running. Exact even when the reader thread is starved of CPU.
    virtual bool caught_up(std::chrono::steady_clock::time_point deadline) = 0;

    // True when the backend cannot attribute changes to a process (inotify): the FUSE layer
    // must then call expect_own_change() just after each op it applies to SOURCE.
    virtual bool needs_echo_hints() const noexcept = 0;
    // Announces that syncfs itself has just changed `path` (relative to SOURCE): the path's
    // state now (lstat) is remembered for options.echo_ttl, and an event on the path is
    // dropped only while the path is in such a state (echo_filter.h). Call it after the
    // syscall, from any thread. No-op in fanotify mode.
    virtual void expect_own_change(std::string_view path) noexcept = 0;

protected:
    Watcher() = default;
};

}  // namespace sfs::repl::watch
