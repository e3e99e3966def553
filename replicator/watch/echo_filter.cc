#include "replicator/watch/echo_filter.h"

#include <fcntl.h>

#include <cerrno>
#include <iterator>

namespace sfs::repl::watch {
namespace {

bool same_time(const struct timespec& a, const struct timespec& b) noexcept {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

}  // namespace

NodeState NodeState::of(const struct stat& st) noexcept {
    NodeState s;
    s.known = true;
    s.exists = true;
    s.mode = st.st_mode;
    s.ino = st.st_ino;
    s.dev = st.st_dev;
    s.uid = st.st_uid;
    s.gid = st.st_gid;
    s.nlink = st.st_nlink;
    s.size = st.st_size;
    s.mtime = st.st_mtim;
    s.ctime = st.st_ctim;
    return s;
}

NodeState NodeState::absent() noexcept {
    NodeState s;
    s.known = true;
    return s;
}

NodeState NodeState::read(int root_fd, const std::string& path) noexcept {
    struct stat st;
    if (::fstatat(root_fd, path.empty() ? "" : path.c_str(), &st,
                  AT_SYMLINK_NOFOLLOW | (path.empty() ? AT_EMPTY_PATH : 0)) == 0) {
        return of(st);
    }
    if (errno == ENOENT || errno == ENOTDIR) return absent();
    return NodeState{};  // unknown: never taken for an echo
}

bool same_state(const NodeState& own, const NodeState& now, bool metadata) noexcept {
    if (!own.known || !now.known) return false;
    if (own.exists != now.exists) return false;
    if (!own.exists) return true;
    if (own.mode != now.mode || own.ino != now.ino || own.dev != now.dev || own.uid != now.uid || own.gid != now.gid) {
        return false;
    }
    if (S_ISDIR(own.mode) && !metadata) return true;
    if (S_ISDIR(own.mode)) return same_time(own.mtime, now.mtime) && same_time(own.ctime, now.ctime);
    return own.nlink == now.nlink && own.size == now.size && same_time(own.mtime, now.mtime) &&
           same_time(own.ctime, now.ctime);
}

void EchoFilter::expect(std::string_view path, const NodeState& state, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto [it, fresh] = until_.try_emplace(std::string(path));
    Entry& e = it->second;
    if (fresh || e.until <= now) {
        e.count = 0;  // an expired announcement's states say nothing any more
        e.next = 0;
    }
    e.until = now + ttl_;
    e.states[e.next] = state;
    e.next = static_cast<std::uint8_t>((e.next + 1) % kStates);
    if (e.count < kStates) ++e.count;
    prune_locked(now);
}

bool EchoFilter::expected(const std::string& path, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = until_.find(path);
    return it != until_.end() && now < it->second.until;
}

bool EchoFilter::is_own(const std::string& path, const NodeState& state, bool metadata, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    auto it = until_.find(path);
    if (it == until_.end() || now >= it->second.until) return false;
    const Entry& e = it->second;
    for (std::size_t i = 0; i < e.count; ++i) {
        if (same_state(e.states[i], state, metadata)) return true;
    }
    return false;
}

// Bounded memory: expired entries are dropped at most once per ttl, in one sweep.
void EchoFilter::prune_locked(Clock::time_point now) {
    if (now < next_prune_) return;
    next_prune_ = now + ttl_;
    for (auto it = until_.begin(); it != until_.end();) {
        it = it->second.until <= now ? until_.erase(it) : std::next(it);
    }
}

}  // namespace sfs::repl::watch
