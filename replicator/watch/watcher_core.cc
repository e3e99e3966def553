#include "replicator/watch/watcher_core.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "replicator/watch/paths.h"
#include "replicator/watch/tree_walk.h"

namespace sfs::repl::watch {

const char* to_string(OutsideChange::Kind kind) noexcept {
    switch (kind) {
        case OutsideChange::Kind::Modified: return "Modified";
        case OutsideChange::Kind::Created: return "Created";
        case OutsideChange::Kind::DirCreated: return "DirCreated";
        case OutsideChange::Kind::Deleted: return "Deleted";
        case OutsideChange::Kind::Renamed: return "Renamed";
        case OutsideChange::Kind::Attrib: return "Attrib";
        case OutsideChange::Kind::Overflow: return "Overflow";
    }
    return "?";
}

WatcherCore::WatcherCore(std::string mode, UniqueFd root, std::string source_path,
                         WatchOptions options, OutsideChangeSink& sink, bool echo_hints)
    : mode_(std::move(mode)),
      root_(std::move(root)),
      source_path_(std::move(source_path)),
      options_(std::move(options)),
      sink_(sink),
      exclude_(options_.exclude) {
    if (echo_hints) echo_.emplace(options_.echo_ttl);
}

WatcherCore::~WatcherCore() { stop(); }

Result<void> WatcherCore::start_thread() {
    stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!stop_fd_) return fail(source_path_ + ": eventfd: " + std::strerror(errno), errno);
    kick_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!kick_fd_) return fail(source_path_ + ": eventfd: " + std::strerror(errno), errno);
    running_ = true;
    try {
        thread_ = std::thread([this] { run(); });
    } catch (const std::system_error& e) {
        running_ = false;
        return fail(source_path_ + ": cannot start watcher thread: " + e.what());
    }
    return {};
}

void WatcherCore::stop() noexcept {
    std::lock_guard lock(stop_mutex_);
    if (!thread_.joinable()) return;
    std::uint64_t one = 1;
    if (::write(stop_fd_.get(), &one, sizeof one) < 0) {
        spdlog::error("watcher {}: cannot signal stop: {}", source_path_, std::strerror(errno));
    }
    thread_.join();
}

void WatcherCore::run() noexcept {
    spdlog::info("watcher {}: watching for outside changes ({})", source_path_, mode_);
    for (;;) {
        int timeout = -1;
        auto deadline = next_deadline();
        if (!delayed_.empty() && (!deadline || delayed_.front().due < *deadline)) deadline = delayed_.front().due;
        if (deadline) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
            timeout = static_cast<int>(std::max<std::int64_t>(0, left.count()));
        }
        if (!options_.fault_fail_file.empty() && ::unlink(options_.fault_fail_file.c_str()) == 0) {
            record_error("injected fault (" + options_.fault_fail_file + "): the watcher stops");
            report_overflow("", "the watcher stopped on an injected fault");
            break;
        }
        const bool hold = !options_.fault_hold_file.empty() && ::access(options_.fault_hold_file.c_str(), F_OK) == 0;
        // Fault injection: notice the hold / fail file within 20 ms, also while idle.
        if (!options_.fault_hold_file.empty() || !options_.fault_fail_file.empty()) {
            timeout = timeout < 0 || timeout > 20 ? 20 : timeout;
        }
        // caught_up(): the kernel queue is empty now and nothing is held, so every event
        // queued before kick k (read before this check) has been read and delivered.
        if (const std::uint64_t k = kicks_.load(); k != drained_kick_.load() && !hold && delayed_.empty() &&
                                                   !holds_changes()) {
            pollfd q{kernel_fd(), POLLIN, 0};
            if (::poll(&q, 1, 0) == 0) drained_kick_.store(k);
        }
        pollfd fds[3] = {{hold ? -1 : kernel_fd(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}, {kick_fd_.get(), POLLIN, 0}};
        int n = ::poll(fds, 3, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            record_error(std::string("poll: ") + std::strerror(errno));
            report_overflow("", "the watcher stopped on a poll error");
            break;
        }
        if (fds[1].revents != 0) break;
        if (fds[2].revents != 0) {
            std::uint64_t v;
            if (::read(kick_fd_.get(), &v, sizeof v) < 0 && errno != EAGAIN) {
                spdlog::warn("watcher {}: reading the wake-up eventfd: {}", source_path_, std::strerror(errno));
            }
            continue;
        }
        if (fds[0].revents & (POLLERR | POLLNVAL)) {
            record_error("kernel event queue fd failed");
            report_overflow("", "the watcher stopped: kernel queue fd failed");
            break;
        }
        if (fds[0].revents & POLLIN) on_readable();
        if (next_deadline()) on_deadline(Clock::now());
        flush_delayed(Clock::now());
    }
    flush_delayed(Clock::time_point::max());  // stopping: deliver what is held, now
    running_ = false;
}

bool WatcherCore::caught_up(Clock::time_point deadline) {
    if (!running_.load() || !kick_fd_) return false;
    const std::uint64_t k = ++kicks_;
    std::uint64_t one = 1;
    if (::write(kick_fd_.get(), &one, sizeof one) < 0) return false;
    while (drained_kick_.load() < k) {
        if (!running_.load() || Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

WatchStatus WatcherCore::status() const {
    WatchStatus s;
    s.mode = mode_;
    s.events_seen = events_seen_.load();
    s.changes_reported = reported_.load();
    s.own_dropped = own_dropped_.load();
    s.overflows = overflows_.load();
    s.errors = errors_.load();
    s.watched_dirs = watched_dirs_.load();
    s.running = running_.load();
    std::lock_guard lock(error_mutex_);
    s.last_error = last_error_;
    return s;
}

void WatcherCore::expect_own_change(std::string_view path) noexcept {
    if (!echo_) return;
    try {
        // The state syncfs's own change left: called just after the syscall (docs/watcher.md).
        const std::string p(path);
        echo_->expect(p, NodeState::read(root_.get(), p));
    } catch (...) {
        // Out of memory: the change is then reported as an outside one, which costs a
        // transfer but loses nothing.
    }
}

bool WatcherCore::is_echo(const Delayed& d) {
    using K = OutsideChange::Kind;
    const OutsideChange& c = d.change;
    if (!echo_ || c.kind == K::Overflow) return false;
    // The announcement must be alive when the event was read, not when it is judged: a
    // reader starved of CPU past the ttl would otherwise report its own echoes. The state
    // comparison, not the clock, is what tells an outside change apart.
    const auto now = d.due - options_.echo_delay;
    if (!echo_->expected(c.path, now) || (c.kind == K::Renamed && !echo_->expected(c.path2, now))) return false;
    const bool metadata = c.kind == K::Attrib;
    if (!echo_->is_own(c.path, d.seen, metadata, now)) return false;
    if (!echo_->is_own(c.path, NodeState::read(root_.get(), c.path), metadata, now)) return false;
    if (c.kind != K::Renamed) return true;
    return echo_->is_own(c.path2, d.seen2, false, now) &&
           echo_->is_own(c.path2, NodeState::read(root_.get(), c.path2), false, now);
}

void WatcherCore::report(OutsideChange change) {
    if (change.kind == OutsideChange::Kind::Deleted && change.is_dir && !unlisted_.empty()) {
        for (auto it = unlisted_.lower_bound(change.path); it != unlisted_.end() && it->starts_with(change.path);) {
            it = is_same_or_under(*it, change.path) ? unlisted_.erase(it) : std::next(it);
        }
    }
    if (excluded(change.path) && (change.kind != OutsideChange::Kind::Renamed || excluded(change.path2))) {
        return;
    }
    if (change.kind == OutsideChange::Kind::Renamed && excluded(change.path2)) {
        change.kind = OutsideChange::Kind::Deleted;  // moved into an excluded area
        change.path2.clear();
    } else if (change.kind == OutsideChange::Kind::Renamed && excluded(change.path)) {
        change.kind = change.is_dir ? OutsideChange::Kind::DirCreated : OutsideChange::Kind::Created;
        change.path = std::move(change.path2);
        change.path2.clear();
        if (change.is_dir) {
            std::string dir = change.path;
            report(std::move(change));
            report_contents(dir);
            return;
        }
    }
    if (echo_) {
        // Bounded: the kernel queue is the real buffer; past this, deliver at once.
        constexpr std::size_t kMaxDelayed = 16384;
        if (delayed_.size() >= kMaxDelayed) flush_delayed(Clock::time_point::max());
        // The state now, i.e. (about) when the kernel queued the event: an outside change
        // followed by one of syncfs's own before this event is handled is told apart by it.
        NodeState seen = NodeState::read(root_.get(), change.path);
        NodeState seen2 = change.kind == OutsideChange::Kind::Renamed ? NodeState::read(root_.get(), change.path2)
                                                                       : NodeState{};
        delayed_.push_back(Delayed{Clock::now() + options_.echo_delay, std::move(change), seen, seen2});
        return;
    }
    deliver(std::move(change));
}

void WatcherCore::flush_delayed(Clock::time_point now) noexcept {
    while (!delayed_.empty() && delayed_.front().due <= now) {
        Delayed d = std::move(delayed_.front());
        delayed_.pop_front();
        bool echo = false;
        try {
            echo = is_echo(d);
        } catch (const std::exception&) {
            echo = false;  // cannot prove it is an echo: report it
        }
        if (echo) {
            ++own_dropped_;
            continue;
        }
        if (d.change.kind == OutsideChange::Kind::Overflow) {
            ++reported_;
            sink_.on_outside_change(d.change);
            continue;
        }
        try {
            deliver(d.change);
        } catch (const std::exception& e) {
            // Only allocation can fail here; the change goes out unfiltered rather than lost.
            spdlog::error("watcher {}: {}", source_path_, e.what());
            ++reported_;
            sink_.on_outside_change(d.change);
        }
    }
}

void WatcherCore::deliver(OutsideChange change) {
    if ((change.kind == OutsideChange::Kind::Modified || change.kind == OutsideChange::Kind::Attrib) &&
        last_reported_ && *last_reported_ == change) {
        return;
    }
    last_reported_ = change;
    ++reported_;
    sink_.on_outside_change(change);
}

void WatcherCore::report_overflow(const std::string& path, const std::string& reason) {
    ++overflows_;
    spdlog::warn("watcher {}: {}; reconciling {}", source_path_, reason,
                 path.empty() ? std::string("the whole tree") : "subtree " + path);
    last_reported_.reset();
    OutsideChange change{OutsideChange::Kind::Overflow, path, {}, true};
    if (echo_) {  // keep the order with the changes held for echo filtering
        delayed_.push_back(Delayed{Clock::now() + options_.echo_delay, std::move(change), {}, {}});
        return;
    }
    ++reported_;
    sink_.on_outside_change(change);
}

void WatcherCore::report_move(const std::optional<std::string>& from, const std::optional<std::string>& to,
                              bool is_dir) {
    // Directories reported as new but not listed yet, now under `from`, are listed at `to`.
    std::vector<std::string> relist;
    if (from && is_dir && !unlisted_.empty()) {
        for (auto it = unlisted_.lower_bound(*from); it != unlisted_.end() && it->starts_with(*from);) {
            if (!is_same_or_under(*it, *from)) {
                ++it;
                continue;
            }
            if (to) relist.push_back(*to + it->substr(from->size()));
            it = unlisted_.erase(it);
        }
    }
    if (from && to) {
        report(OutsideChange{OutsideChange::Kind::Renamed, *from, *to, is_dir});
        for (const auto& dir : relist) {
            if (!excluded(dir)) report_contents(dir);
        }
    } else if (from) {
        report(OutsideChange{OutsideChange::Kind::Deleted, *from, {}, is_dir});
    } else if (to) {
        if (!is_dir) {
            report(OutsideChange{OutsideChange::Kind::Created, *to, {}, false});
            return;
        }
        report(OutsideChange{OutsideChange::Kind::DirCreated, *to, {}, true});
        if (!excluded(*to)) report_contents(*to);
    }
}

void WatcherCore::report_contents(const std::string& path) {
    TreeWalkCallbacks cb;
    cb.on_entry = [this](const std::string& rel, bool is_dir) {
        if (excluded(rel)) return false;
        report(OutsideChange{is_dir ? OutsideChange::Kind::DirCreated : OutsideChange::Kind::Created, rel, {},
                             is_dir});
        return true;
    };
    cb.on_error = [this](const std::string& rel, int err) {
        record_error(rel + ": cannot list: " + std::strerror(err));
        report_overflow(rel, "cannot list a new directory");
    };
    if (walk_tree(root_fd(), path, cb)) return;
    // Bounded: a flood of vanished directories ends in one reconcile of everything.
    constexpr std::size_t kMaxUnlisted = 4096;
    if (unlisted_.size() >= kMaxUnlisted) {
        unlisted_.clear();
        report_overflow("", "too many new directories vanished before they could be listed");
        return;
    }
    unlisted_.insert(path);
}

void WatcherCore::record_error(const std::string& message) {
    ++errors_;
    spdlog::error("watcher {}: {}", source_path_, message);
    std::lock_guard lock(error_mutex_);
    last_error_ = message;
}

}  // namespace sfs::repl::watch
