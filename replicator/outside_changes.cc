#include "replicator/outside_changes.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

namespace sfs::repl {
using Clock = std::chrono::steady_clock;

OutsideChanges::OutsideChanges(std::string mode, std::vector<std::string> excludes, std::function<void()> reconcile)
    : mode_(mode.empty() ? "auto" : std::move(mode)), excludes_(std::move(excludes)), reconcile_(std::move(reconcile)) {}

OutsideChanges::~OutsideChanges() { stop(); }

Result<void> OutsideChanges::check_mode(const std::string& mode) {
    if (mode.empty() || mode == "off" || mode == "auto" || mode == "fanotify" || mode == "inotify") return {};
    return fail("watch=" + mode + ": expected off, auto, fanotify or inotify");
}

Result<void> OutsideChanges::start(int source_dirfd, const std::string& source_path) {
    if (!enabled()) return {};
    watch::WatchOptions o;
    o.ignore_pid = ::getpid();
    o.exclude = excludes_;
    o.backend = mode_ == "fanotify" ? watch::Backend::Fanotify
                : mode_ == "inotify" ? watch::Backend::Inotify
                                     : watch::Backend::Auto;
    worker_ = std::thread([this] { run(); });
    auto w = watch::Watcher::start(source_dirfd, source_path, o, *this);
    if (!w) {
        // Never silently miss a change: without a watcher, outside changes wait for a resync.
        spdlog::error("watcher: {} (changes made outside the mount are only found by `syncfsctl resync`)",
                      w.error().message);
        std::lock_guard lock(mu_);
        start_error_ = w.error().message;
        if (mode_ != "auto") return std::unexpected(w.error());
        return {};
    }
    watcher_ = std::move(*w);
    spdlog::info("watcher: watching {} for changes made outside the mount ({})", source_path, watcher_->mode());
    return {};
}

void OutsideChanges::stop() noexcept {
    if (watcher_) watcher_->stop();  // no sink call after this
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void OutsideChanges::own_change(const std::string& path) noexcept {
    if (watcher_ && watcher_->needs_echo_hints()) watcher_->expect_own_change(path);
}

void OutsideChanges::on_outside_change(const watch::OutsideChange& change) noexcept {
    {
        std::lock_guard lock(mu_);
        queue_.on_outside_change(change);
        ++received_;
    }
    cv_.notify_all();
}

void OutsideChanges::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [&] { return stopping_ || received_ > acted_; });
        if (received_ == acted_ && stopping_) return;
        // The batch and the count it covers, taken atomically against on_outside_change().
        std::vector<watch::OutsideChange> batch = queue_.drain(std::chrono::milliseconds(0));
        const std::uint64_t through = received_;
        lock.unlock();
        for (const auto& c : batch) {
            spdlog::debug("watcher: outside change {} '{}'{}", watch::to_string(c.kind), c.path,
                          c.path2.empty() ? std::string() : " -> '" + c.path2 + "'");
            if (c.kind == watch::OutsideChange::Kind::Overflow) {
                spdlog::warn("watcher: events lost for '{}': reconciling", c.path.empty() ? "SOURCE" : c.path);
            }
            if (invalidate_) {
                invalidate_(c.path);
                if (!c.path2.empty()) invalidate_(c.path2);
            }
        }
        if (!batch.empty()) reconcile_();
        lock.lock();
        acted_ = through;
        ++batches_;
        cv_.notify_all();
    }
}

bool OutsideChanges::flush(Clock::time_point deadline) {
    if (!watcher_) return true;
    // Events made before the call may still be in the kernel queue or held by the watcher
    // (echo delay, move pairing): wait until it has been quiet for a settle period longer
    // than those holds. Quiet means no change *about SOURCE* was delivered: raw kernel events
    // do not count, because a filesystem-wide fanotify mark also sees every other writer on
    // the same filesystem, and on a busy server that would never be quiet.
    const auto settle = std::chrono::milliseconds(300);
    auto activity = [&] {
        watch::WatchStatus st = watcher_->status();
        return st.changes_reported + st.overflows;
    };
    std::uint64_t seen = activity();
    auto quiet_since = Clock::now();
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        const std::uint64_t now_seen = activity();
        if (now_seen != seen) {
            seen = now_seen;
            quiet_since = Clock::now();
        }
        std::unique_lock lock(mu_);
        if (Clock::now() - quiet_since >= settle && acted_ == received_) return true;
        if (stopping_) return acted_ == received_;
        if (Clock::now() >= deadline) return false;
    }
}

void OutsideChanges::add_status(protocol::control::Fields& f) const {
    auto add = [&](const std::string& k, std::string v) { f.emplace_back("watcher." + k, std::move(v)); };
    if (!enabled()) {
        add("mode", "off");
        return;
    }
    std::uint64_t received, acted, batches;
    std::string start_error;
    {
        std::lock_guard lock(mu_);
        received = received_;
        acted = acted_;
        batches = batches_;
        start_error = start_error_;
    }
    if (!watcher_) {
        add("mode", "failed");
        add("last_error", start_error);
        return;
    }
    watch::WatchStatus s = watcher_->status();
    add("mode", s.mode);
    add("running", s.running ? "true" : "false");
    add("events_seen", std::to_string(s.events_seen));
    add("changes_reported", std::to_string(s.changes_reported));
    add("own_dropped", std::to_string(s.own_dropped));
    add("overflows", std::to_string(s.overflows));
    add("errors", std::to_string(s.errors));
    add("watched_dirs", std::to_string(s.watched_dirs));
    add("changes_pending", std::to_string(received - acted));
    add("batches", std::to_string(batches));
    add("queue_collapsed", std::to_string(queue_.collapsed()));
    add("last_error", s.last_error);
}

}  // namespace sfs::repl
