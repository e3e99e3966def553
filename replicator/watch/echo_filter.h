// Echo suppression for backends that cannot see who made a change (inotify).
//
// Design note. inotify names a path, never a process, so a name match alone cannot tell
// syncfs's own change from an operator's write made a moment later: dropping on the name
// (the first design) lost such writes silently. Now the FUSE layer announces each of its
// own changes just after the syscall (expect), and the state the path has then (NodeState:
// inode, size, mtime and ctime in ns, mode, owner, link count) is remembered for `ttl`. An
// event on that path is syncfs's own echo only when the path's state, read when the event
// is read AND again when it is handled, is one of the states syncfs's own changes left.
// Anything else -- an outside write after ours moves ctime (and mostly size or mtime) -- is
// reported, and costs one cheap Verify record. One own op producing several events
// (create + modify + close_write + attrib) is fine: each event is judged by the state, not
// counted against the announcement. Residual limits are in docs/watcher.md ("Echo
// suppression").
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sfs::repl::watch {

// What echo suppression compares of a SOURCE path (lstat, never following a symlink).
struct NodeState {
    bool known = false;   // false: lstat failed for another reason than "not there": never an echo
    bool exists = false;
    mode_t mode = 0;      // type and permission bits
    ino_t ino = 0;
    dev_t dev = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    nlink_t nlink = 0;
    off_t size = 0;
    struct timespec mtime{};
    struct timespec ctime{};

    static NodeState of(const struct stat& st) noexcept;
    static NodeState absent() noexcept;
    // lstat of `path` (relative to `root_fd`, "" = root_fd itself).
    static NodeState read(int root_fd, const std::string& path) noexcept;

    bool is_dir() const noexcept { return exists && S_ISDIR(mode); }
};

// True when `now` is the state an own change left (`own`): then nothing changed the path
// since. For a directory only its identity, type, mode and owner count (its size, mtime and
// ctime move with every entry made in it, and each entry has its own events) unless
// `metadata` (an attribute event on the directory itself: times and xattrs count too).
bool same_state(const NodeState& own, const NodeState& now, bool metadata) noexcept;

class EchoFilter {
public:
    using Clock = std::chrono::steady_clock;
    explicit EchoFilter(std::chrono::milliseconds ttl) : ttl_(ttl) {}

    // Thread-safe; called from FUSE threads just after syncfs changed `path`, with the state
    // the path has now. The last kStates states of a path are kept (concurrent own ops).
    void expect(std::string_view path, const NodeState& state, Clock::time_point now = Clock::now());
    // True when `path` was announced less than ttl ago (cheap pre-check, no state compared).
    bool expected(const std::string& path, Clock::time_point now = Clock::now());
    // True when `path` was announced less than ttl ago and `state` is one an own change left.
    bool is_own(const std::string& path, const NodeState& state, bool metadata, Clock::time_point now = Clock::now());

    static constexpr std::size_t kStates = 8;

private:
    struct Entry {
        Clock::time_point until;
        std::array<NodeState, kStates> states;
        std::uint8_t count = 0;  // valid states
        std::uint8_t next = 0;   // ring position of the next state
    };
    void prune_locked(Clock::time_point now);

    const std::chrono::milliseconds ttl_;
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> until_;  // guarded by mutex_
    Clock::time_point next_prune_{};                // guarded by mutex_
};

}  // namespace sfs::repl::watch
