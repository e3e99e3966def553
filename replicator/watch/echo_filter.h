// Echo suppression for backends that cannot see who made a change (inotify).
//
// The FUSE layer announces "I am about to change path P" (expect); for `ttl` after that,
// events on P are taken to be syncfs's own and dropped. The residual risk — an outside
// write to the very same path inside that window is attributed to syncfs — is documented
// in docs/watcher.md; fanotify mode has no such window.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sfs::repl::watch {

class EchoFilter {
public:
    using Clock = std::chrono::steady_clock;
    explicit EchoFilter(std::chrono::milliseconds ttl) : ttl_(ttl) {}

    // Thread-safe; called from FUSE threads.
    void expect(std::string_view path, Clock::time_point now = Clock::now());
    // True when `path` was announced less than ttl ago.
    bool is_own(const std::string& path, Clock::time_point now = Clock::now());

private:
    void prune_locked(Clock::time_point now);

    const std::chrono::milliseconds ttl_;
    std::mutex mutex_;
    std::unordered_map<std::string, Clock::time_point> until_;  // guarded by mutex_
    Clock::time_point next_prune_{};                              // guarded by mutex_
};

}  // namespace sfs::repl::watch
