// OutsideChanges: connects the fallback watcher (replicator/watch/, docs/watcher.md) to the
// replicator. Owned by the Replicator facade.
//
// Design note
//  - The watcher's sink counts each change (`received_`) and appends it to an
//    OutsideChangeQueue under one mutex; the worker takes a batch and the count it covers
//    under the same mutex, so "acted >= n" means "every change received before n was acted on".
//  - Acting on a batch: the kernel cache of the mount is invalidated for each path (through
//    the callback fs/main.cc installs; never from a FUSE handler; for an Overflow every node
//    the kernel knows in that subtree, since any of them may have changed while events were
//    lost; likewise the whole tree after a dead watcher's restart), then each change becomes a
//    journal record (through `record_`, the ChangeTracker): Verify{path} (subtree for a new
//    directory, a delete and an Overflow) or Rename{from, to, kRenameFromOutside}. Each
//    mirror's sender acts on them in journal order, per path: a librsync delta, the
//    namespace op, a delete, or a subtree reconcile (docs/watcher.md). So outside changes are
//    as durable as the mount's own: replayed after a crash, trimmed only after every ack.
//  - A watcher whose reader thread died (status().running false) is restarted by the worker
//    with exponential backoff (1 s .. 60 s); after a restart the whole tree is verified,
//    because changes made while it was down were not seen. Both are logged and counted in
//    `syncfsctl status` (watcher.restarts, watcher.last_failure).
//  - flush(): `syncfsctl wait` first passes a barrier through the watcher's reader
//    (Watcher::caught_up: every event queued before the call read and delivered, nothing
//    held), then waits until every change received by then was journaled.
// Lock order: mu_ before the ChangeTracker's. watcher_mu_ is taken alone.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "fs/change_record.h"
#include "protocol/control/control.h"
#include "replicator/watch/change_queue.h"
#include "replicator/watch/watcher.h"

namespace sfs::repl {

// "The kernel may cache `path` (relative to SOURCE; "" = SOURCE) and its entry stale", and
// with `subtree` "events for everything below `path` were lost": installed by fs/main.cc
// (fs::Session::invalidate / invalidate_subtree), called from the worker thread only.
using InvalidateFn = std::function<void(const std::string& path, bool subtree)>;
// Journals one record for the mirrors (the ChangeTracker's on_change).
using RecordFn = std::function<void(const fs::ChangeRecord& record)>;

class OutsideChanges final : private watch::OutsideChangeSink {
public:
    // mode: "off", "auto", "fanotify" or "inotify".
    OutsideChanges(std::string mode, std::vector<std::string> excludes, RecordFn record);
    ~OutsideChanges();

    static Result<void> check_mode(const std::string& mode);
    bool enabled() const noexcept { return mode_ != "off"; }
    void set_invalidator(InvalidateFn fn) { invalidate_ = std::move(fn); }
    // Restart backoff of a dead watcher (tests shorten it).
    void set_restart_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) {
        backoff_min_ = min;
        backoff_max_ = max;
    }

    // Starts the watcher (ignore_pid = getpid(): call after fuse_daemonize) and the worker.
    // Fault injection for tests: SYNCFS_TEST_WATCH_HOLD / SYNCFS_TEST_WATCH_FAIL name the
    // files of WatchOptions::fault_hold_file / fault_fail_file; SYNCFS_TEST_WATCH_MAX_INOTIFY
    // and SYNCFS_TEST_WATCH_REWATCH_MS set max_inotify_watches / rewatch_interval
    // (docs/watcher.md).
    Result<void> start(int source_dirfd, const std::string& source_path);
    // Stops the watcher, then journals what it delivered, then stops the worker. Idempotent.
    void stop() noexcept;

    // ChangeTracker hook: syncfs itself changes `path` now (inotify echo suppression).
    void own_change(const std::string& path) noexcept;
    // Waits until outside changes seen before the call were journaled. False on timeout.
    bool flush(std::chrono::steady_clock::time_point deadline);
    void add_status(protocol::control::Fields& f) const;

    // The journal records for one (coalesced) batch of changes; exposed for tests.
    static std::vector<fs::ChangeRecord> records_for(const std::vector<watch::OutsideChange>& batch);

private:
    void on_outside_change(const watch::OutsideChange& change) noexcept override;
    void run();
    void act(const std::vector<watch::OutsideChange>& batch);
    void check_watcher(std::chrono::steady_clock::time_point now);  // worker thread
    std::shared_ptr<watch::Watcher> watcher() const;

    const std::string mode_;
    const std::vector<std::string> excludes_;
    const RecordFn record_;
    InvalidateFn invalidate_;
    std::chrono::milliseconds backoff_min_{1000}, backoff_max_{60000};
    int source_dirfd_ = -1;
    std::string source_path_;
    watch::WatchOptions options_;

    mutable std::shared_mutex watcher_mu_;
    std::shared_ptr<watch::Watcher> watcher_;  // guarded by watcher_mu_
    std::atomic<bool> echo_hints_{false};      // the current watcher needs expect_own_change()
    watch::OutsideChangeQueue queue_;
    std::thread worker_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::uint64_t received_ = 0;  // guarded by mu_
    std::uint64_t acted_ = 0;     // guarded by mu_
    std::uint64_t batches_ = 0;   // guarded by mu_
    std::uint64_t records_ = 0;   // guarded by mu_: journal records made
    std::uint64_t renames_ = 0;   // guarded by mu_
    std::uint64_t fallbacks_ = 0;  // guarded by mu_: Overflow subtrees verified
    std::string last_fallback_;    // guarded by mu_
    std::uint64_t restarts_ = 0;   // guarded by mu_
    std::string last_failure_;     // guarded by mu_
    bool dead_ = false;            // guarded by mu_: the watcher died and is not restarted yet
    bool no_restart_ = false;      // guarded by mu_: stop() began
    std::chrono::steady_clock::time_point restart_at_{};  // worker thread only
    std::chrono::milliseconds backoff_{0};                // worker thread only
    std::chrono::steady_clock::time_point last_start_ = std::chrono::steady_clock::now();  // worker thread only
    std::uint64_t base_events_ = 0, base_reported_ = 0, base_own_ = 0, base_overflows_ = 0,
                  base_errors_ = 0;  // guarded by mu_: counters of watchers that were replaced
    bool stopping_ = false;       // guarded by mu_
    std::string start_error_;     // guarded by mu_
};

}  // namespace sfs::repl

namespace sfs::repl {

// The replicator's fs::ChangeSink when a watcher runs: announces each change of the mount
// to the watcher (inotify echo suppression, docs/watcher.md) before the tracker records it.
class EchoHintSink final : public fs::ChangeSink {
public:
    EchoHintSink(fs::ChangeSink& inner, OutsideChanges& outside) : inner_(inner), outside_(outside) {}
    void on_change(const fs::ChangeRecord& record) noexcept override {
        outside_.own_change(record.path);
        if (!record.path2.empty()) outside_.own_change(record.path2);
        inner_.on_change(record);
    }
    int wait_durable(std::uint64_t ino, const std::string& path) noexcept override {
        return inner_.wait_durable(ino, path);
    }

private:
    fs::ChangeSink& inner_;
    OutsideChanges& outside_;
};

}  // namespace sfs::repl
