// OutsideChanges: connects the fallback watcher (replicator/watch/, docs/watcher.md) to the
// replicator. Owned by the Replicator facade.
//
// Design note
//  - The watcher's sink counts each change (`received_`) and appends it to an
//    OutsideChangeQueue under one mutex; the worker takes a batch and the count it covers
//    under the same mutex, so "acted >= n" means "every change received before n was acted on".
//  - Acting on a batch: the kernel cache of the mount is invalidated for each path (through
//    the callback fs/main.cc installs; never from a FUSE handler), then every mirror gets a
//    reconcile request (quick check by type/size/mtime, librsync delta for changed files,
//    deletes only what SOURCE lacks: exactly "delete only if still absent in SOURCE" and
//    "verify the new name" of a rename). One reconcile covers a whole batch.
//  - Crash safety: the Replicator removes the clean marker at start and writes it only after
//    a clean stop that drained this queue, so an outside change the kernel handed us and a
//    crash lost is covered by the full checksum reconcile of the next start.
//  - flush(): `syncfsctl wait` first waits until the watcher saw no new event for a settle
//    period (covers its echo delay and move pairing) and every change received was acted on.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "fs/change_record.h"
#include "protocol/control/control.h"
#include "replicator/watch/change_queue.h"
#include "replicator/watch/watcher.h"

namespace sfs::repl {

// "The kernel may cache `path` (relative to SOURCE; "" = SOURCE) and its entry stale":
// installed by fs/main.cc (fs::Session::invalidate), called from the worker thread only.
using InvalidateFn = std::function<void(const std::string& path)>;

class OutsideChanges final : private watch::OutsideChangeSink {
public:
    // mode: "off", "auto", "fanotify" or "inotify". `reconcile` requests a reconcile of every mirror.
    OutsideChanges(std::string mode, std::vector<std::string> excludes, std::function<void()> reconcile);
    ~OutsideChanges();

    static Result<void> check_mode(const std::string& mode);
    bool enabled() const noexcept { return mode_ != "off"; }
    void set_invalidator(InvalidateFn fn) { invalidate_ = std::move(fn); }

    // Starts the watcher (ignore_pid = getpid(): call after fuse_daemonize) and the worker.
    Result<void> start(int source_dirfd, const std::string& source_path);
    // Stops the watcher, then acts on what it delivered, then stops the worker. Idempotent.
    void stop() noexcept;

    // ChangeTracker hook: syncfs itself changes `path` now (inotify echo suppression).
    void own_change(const std::string& path) noexcept;
    // Waits until outside changes seen before the call were acted on. False on timeout.
    bool flush(std::chrono::steady_clock::time_point deadline);
    void add_status(protocol::control::Fields& f) const;

private:
    void on_outside_change(const watch::OutsideChange& change) noexcept override;
    void run();

    const std::string mode_;
    const std::vector<std::string> excludes_;
    const std::function<void()> reconcile_;
    InvalidateFn invalidate_;
    std::unique_ptr<watch::Watcher> watcher_;
    watch::OutsideChangeQueue queue_;
    std::thread worker_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::uint64_t received_ = 0;  // guarded by mu_
    std::uint64_t acted_ = 0;     // guarded by mu_
    std::uint64_t batches_ = 0;   // guarded by mu_
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
