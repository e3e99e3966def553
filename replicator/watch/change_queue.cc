#include "replicator/watch/change_queue.h"

#include <spdlog/spdlog.h>

#include "replicator/watch/coalesce.h"

namespace sfs::repl::watch {

OutsideChange OutsideChangeQueue::whole_tree() { return OutsideChange{OutsideChange::Kind::Overflow, "", {}, true}; }

OutsideChangeQueue::OutsideChangeQueue(std::size_t max_pending) : max_pending_(max_pending) {
    spare_.assign(1, whole_tree());
}

void OutsideChangeQueue::on_outside_change(const OutsideChange& change) noexcept {
    {
        std::lock_guard lock(mutex_);
        if (saturated_) return;
        try {
            if (pending_.size() >= max_pending_) throw std::length_error("queue full");
            pending_.push_back(change);
        } catch (const std::exception&) {
            // Full (or out of memory): everything queued is replaced by a reconcile of all.
            pending_.clear();
            pending_.swap(spare_);  // spare_ holds one Overflow(""): no allocation here
            saturated_ = true;
            ++collapsed_;
            spdlog::warn("outside-change queue full ({} changes): reconciling the whole tree instead", max_pending_);
        }
    }
    ready_.notify_one();
}

std::vector<OutsideChange> OutsideChangeQueue::drain(std::chrono::milliseconds timeout) {
    std::vector<OutsideChange> batch;
    {
        std::unique_lock lock(mutex_);
        ready_.wait_for(lock, timeout, [&] { return closed_ || !pending_.empty(); });
        if (closed_) return {};
        batch.swap(pending_);
        if (saturated_) {
            spare_.assign(1, whole_tree());
            saturated_ = false;
        }
    }
    return coalesce(batch);
}

void OutsideChangeQueue::close() {
    {
        std::lock_guard lock(mutex_);
        closed_ = true;
    }
    ready_.notify_all();
}

std::uint64_t OutsideChangeQueue::collapsed() const {
    std::lock_guard lock(mutex_);
    return collapsed_;
}

}  // namespace sfs::repl::watch
