#include "replicator/watch/echo_filter.h"

#include <iterator>

namespace sfs::repl::watch {

void EchoFilter::expect(std::string_view path, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    until_.insert_or_assign(std::string(path), now + ttl_);
    prune_locked(now);
}

bool EchoFilter::is_own(const std::string& path, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = until_.find(path);
    return it != until_.end() && now < it->second;
}

// Bounded memory: expired entries are dropped at most once per ttl, in one sweep.
void EchoFilter::prune_locked(Clock::time_point now) {
    if (now < next_prune_) return;
    next_prune_ = now + ttl_;
    for (auto it = until_.begin(); it != until_.end();) {
        it = it->second <= now ? until_.erase(it) : std::next(it);
    }
}

}  // namespace sfs::repl::watch
