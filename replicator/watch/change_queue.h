// OutsideChangeQueue: the sink the integrator plugs into the watcher. The watcher thread
// only appends (never blocks on the consumer); a replicator worker drains coalesced batches.
//
// Bounded memory: past `max_pending` changes the queue collapses into one Overflow("")
// (reconcile everything) and ignores further changes until drained — they are covered by
// that reconcile, which starts after the drain. Counted in collapsed().
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "replicator/watch/outside_change.h"

namespace sfs::repl::watch {

class OutsideChangeQueue final : public OutsideChangeSink {
public:
    explicit OutsideChangeQueue(std::size_t max_pending = 100000);

    void on_outside_change(const OutsideChange& change) noexcept override;

    // Waits up to `timeout` for changes, then returns everything queued, coalesced
    // (coalesce.h). Empty on timeout or after close().
    std::vector<OutsideChange> drain(std::chrono::milliseconds timeout);
    // Wakes drain() callers for good (shutdown).
    void close();
    std::uint64_t collapsed() const;

private:
    static OutsideChange whole_tree();

    const std::size_t max_pending_;
    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::vector<OutsideChange> pending_;  // guarded by mutex_
    std::vector<OutsideChange> spare_;    // guarded by mutex_: {Overflow("")}, swapped in when full
    bool saturated_ = false;              // guarded by mutex_: pending_ is just Overflow("")
    bool closed_ = false;                 // guarded by mutex_
    std::uint64_t collapsed_ = 0;         // guarded by mutex_
};

}  // namespace sfs::repl::watch
