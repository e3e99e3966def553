#include "replicator/outside_changes.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

namespace sfs::repl {
using Clock = std::chrono::steady_clock;
using Kind = watch::OutsideChange::Kind;

namespace {

bool same_or_under(const std::string& path, const std::string& dir) {
    return dir.empty() || path == dir || (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

fs::ChangeRecord verify(const std::string& path, bool subtree) {
    fs::ChangeRecord r;
    r.kind = fs::ChangeKind::Verify;
    r.path = path;
    r.flags = subtree ? fs::kVerifySubtree : 0;
    return r;
}

}  // namespace

OutsideChanges::OutsideChanges(std::string mode, std::vector<std::string> excludes, RecordFn record)
    : mode_(mode.empty() ? "auto" : std::move(mode)), excludes_(std::move(excludes)), record_(std::move(record)) {}

OutsideChanges::~OutsideChanges() { stop(); }

Result<void> OutsideChanges::check_mode(const std::string& mode) {
    if (mode.empty() || mode == "off" || mode == "auto" || mode == "fanotify" || mode == "inotify") return {};
    return fail("watch=" + mode + ": expected off, auto, fanotify or inotify");
}

std::shared_ptr<watch::Watcher> OutsideChanges::watcher() const {
    std::shared_lock lock(watcher_mu_);
    return watcher_;
}

Result<void> OutsideChanges::start(int source_dirfd, const std::string& source_path) {
    if (!enabled()) return {};
    source_dirfd_ = source_dirfd;
    source_path_ = source_path;
    options_.ignore_pid = ::getpid();
    options_.exclude = excludes_;
    options_.backend = mode_ == "fanotify" ? watch::Backend::Fanotify
                       : mode_ == "inotify" ? watch::Backend::Inotify
                                            : watch::Backend::Auto;
    if (const char* hold = std::getenv("SYNCFS_TEST_WATCH_HOLD")) options_.fault_hold_file = hold;
    if (const char* failf = std::getenv("SYNCFS_TEST_WATCH_FAIL")) options_.fault_fail_file = failf;
    if (const char* cap = std::getenv("SYNCFS_TEST_WATCH_MAX_INOTIFY")) {
        options_.max_inotify_watches = std::strtoull(cap, nullptr, 10);
    }
    if (const char* ms = std::getenv("SYNCFS_TEST_WATCH_REWATCH_MS")) {
        options_.rewatch_interval = std::chrono::milliseconds(std::max(10ull, std::strtoull(ms, nullptr, 10)));
    }
    worker_ = std::thread([this] { run(); });
    auto w = watch::Watcher::start(source_dirfd, source_path, options_, *this);
    if (!w) {
        // Never silently miss a change: without a watcher, outside changes wait for a resync.
        spdlog::error("watcher: {} (changes made outside the mount are only found by `syncfsctl resync`)",
                      w.error().message);
        std::lock_guard lock(mu_);
        start_error_ = w.error().message;
        if (mode_ != "auto") return std::unexpected(w.error());
        return {};
    }
    {
        std::unique_lock lock(watcher_mu_);
        watcher_ = std::move(*w);
        echo_hints_ = watcher_->needs_echo_hints();
    }
    spdlog::info("watcher: watching {} for changes made outside the mount ({})", source_path, watcher()->mode());
    return {};
}

void OutsideChanges::stop() noexcept {
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        no_restart_ = true;  // a watcher stopped on purpose is not a dead one
    }
    if (auto w = watcher()) w->stop();  // no sink call after this
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    if (auto w = watcher()) w->stop();  // idempotent
}

void OutsideChanges::own_change(const std::string& path) noexcept {
    if (!echo_hints_.load(std::memory_order_relaxed)) return;
    std::shared_lock lock(watcher_mu_);
    if (watcher_) watcher_->expect_own_change(path);
}

void OutsideChanges::on_outside_change(const watch::OutsideChange& change) noexcept {
    {
        std::lock_guard lock(mu_);
        queue_.on_outside_change(change);
        ++received_;
    }
    cv_.notify_all();
}

std::vector<fs::ChangeRecord> OutsideChanges::records_for(const std::vector<watch::OutsideChange>& batch) {
    std::vector<fs::ChangeRecord> out;
    // Subtrees this batch verifies whole: later changes inside them are covered (they all
    // happened before the batch is acted on). A rename moves paths around: start over.
    std::vector<std::string> subtrees;
    auto covered = [&](const std::string& p) {
        for (const auto& s : subtrees) {
            if (same_or_under(p, s)) return true;
        }
        return false;
    };
    for (const auto& c : batch) {
        switch (c.kind) {
            case Kind::Renamed: {
                fs::ChangeRecord r;
                r.kind = fs::ChangeKind::Rename;
                r.path = c.path;
                r.path2 = c.path2;
                r.flags = fs::kRenameFromOutside;
                out.push_back(std::move(r));
                subtrees.clear();
                break;
            }
            case Kind::Overflow:
            case Kind::DirCreated:
            case Kind::Deleted:
                if (covered(c.path)) break;
                out.push_back(verify(c.path, true));
                subtrees.push_back(c.path);
                break;
            case Kind::Created:
            case Kind::Modified:
            case Kind::Attrib:
                if (covered(c.path)) break;
                out.push_back(verify(c.path, false));
                break;
        }
    }
    return out;
}

void OutsideChanges::act(const std::vector<watch::OutsideChange>& batch) {
    std::uint64_t renames = 0, fallbacks = 0;
    std::string last_fallback;
    for (const auto& c : batch) {
        spdlog::debug("watcher: outside change {} '{}'{}", watch::to_string(c.kind), c.path,
                      c.path2.empty() ? std::string() : " -> '" + c.path2 + "'");
        if (c.kind == Kind::Overflow) {
            // The watcher logged why; this is the fallback it asks for.
            spdlog::warn("watcher: events lost for '{}': verifying that subtree on every mirror",
                         c.path.empty() ? "SOURCE" : c.path);
            ++fallbacks;
            last_fallback = c.path.empty() ? "/" : c.path;
        }
        if (c.kind == Kind::Renamed) ++renames;
        if (invalidate_) {
            // Lost events (Overflow): any node below may be cached stale, not just its root.
            invalidate_(c.path, c.kind == Kind::Overflow);
            if (!c.path2.empty()) invalidate_(c.path2, false);
        }
    }
    const auto records = records_for(batch);
    for (const auto& r : records) record_(r);
    std::lock_guard lock(mu_);
    records_ += records.size();
    renames_ += renames;
    fallbacks_ += fallbacks;
    if (!last_fallback.empty()) last_fallback_ = last_fallback;
}

void OutsideChanges::check_watcher(Clock::time_point now) {
    auto w = watcher();
    if (!w) return;
    {
        std::lock_guard lock(mu_);
        if (no_restart_) return;
        if (!dead_) {
            const watch::WatchStatus s = w->status();
            if (s.running) return;
            // It delivered Overflow("") when it died (acted on with this batch or the next).
            dead_ = true;
            last_failure_ = s.last_error.empty() ? std::string("the watcher thread ended") : s.last_error;
            if (now - last_start_ > std::chrono::minutes(10)) backoff_ = {};  // it had been healthy
            backoff_ = backoff_.count() == 0 ? backoff_min_ : std::min(backoff_max_, backoff_ * 2);
            restart_at_ = now + backoff_;
            spdlog::error("watcher: died ({}); changes made outside the mount are not seen until it is restarted "
                          "in {} ms",
                          last_failure_, backoff_.count());
            return;
        }
        if (now < restart_at_) return;
    }
    auto fresh = watch::Watcher::start(source_dirfd_, source_path_, options_, *this);
    if (fresh) w->stop();  // its thread has ended: this only joins it
    std::unique_lock lock(mu_);
    if (fresh && no_restart_) {
        // stop() began meanwhile and stopped the old one: this one must not outlive us.
        lock.unlock();
        (*fresh)->stop();
        return;
    }
    if (!fresh) {
        last_failure_ = "restart failed: " + fresh.error().message;
        backoff_ = std::min(backoff_max_, backoff_ * 2);
        restart_at_ = now + backoff_;
        spdlog::error("watcher: {}; next try in {} ms", last_failure_, backoff_.count());
        return;
    }
    const watch::WatchStatus old = w->status();
    base_events_ += old.events_seen;
    base_reported_ += old.changes_reported;
    base_own_ += old.own_dropped;
    base_overflows_ += old.overflows;
    base_errors_ += old.errors;
    {
        std::unique_lock wl(watcher_mu_);
        watcher_ = std::move(*fresh);
        echo_hints_ = watcher_->needs_echo_hints();
    }
    dead_ = false;
    last_start_ = now;
    ++restarts_;
    // Changes made while no watcher ran were not seen: verify everything, after the new
    // watcher is armed (so nothing falls between the two), and drop the mount's kernel
    // cache of everything (a reader through the mount would see stale data otherwise).
    record_(verify("", true));
    if (invalidate_) {
        lock.unlock();
        invalidate_("", true);
        lock.lock();
    }
    ++records_;
    ++fallbacks_;
    last_fallback_ = "/";
    spdlog::warn("watcher: restarted ({} restarts so far); verifying the whole tree for changes made meanwhile",
                 restarts_);
}

void OutsideChanges::run() {
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_ || received_ > acted_; });
        if (received_ == acted_ && stopping_) return;
        // The batch and the count it covers, taken atomically against on_outside_change().
        std::vector<watch::OutsideChange> batch = queue_.drain(std::chrono::milliseconds(0));
        const std::uint64_t through = received_;
        lock.unlock();
        if (!batch.empty()) act(batch);
        check_watcher(Clock::now());
        lock.lock();
        if (!batch.empty()) ++batches_;
        acted_ = through;
        cv_.notify_all();
    }
}

bool OutsideChanges::flush(Clock::time_point deadline) {
    auto w = watcher();
    if (!w) return true;
    // Every event queued before the call read and delivered (a barrier through the reader
    // thread, exact however late it gets the CPU). A dead watcher has delivered all it
    // will; its restart verifies the whole tree.
    if (!w->caught_up(deadline) && w->status().running) return false;
    std::unique_lock lock(mu_);
    const std::uint64_t target = received_;
    cv_.wait_until(lock, deadline, [&] { return acted_ >= target || stopping_; });
    return acted_ >= target;
}

void OutsideChanges::add_status(protocol::control::Fields& f) const {
    auto add = [&](const std::string& k, std::string v) { f.emplace_back("watcher." + k, std::move(v)); };
    auto num = [&](const std::string& k, std::uint64_t v) { add(k, std::to_string(v)); };
    if (!enabled()) {
        add("mode", "off");
        return;
    }
    auto w = watcher();
    std::lock_guard lock(mu_);
    if (!w) {
        add("mode", "failed");
        add("last_error", start_error_);
        return;
    }
    const watch::WatchStatus s = w->status();
    add("mode", s.mode);
    add("running", s.running && !dead_ ? "true" : "false");
    num("events_seen", base_events_ + s.events_seen);
    num("changes_reported", base_reported_ + s.changes_reported);
    num("own_dropped", base_own_ + s.own_dropped);
    num("overflows", base_overflows_ + s.overflows);
    num("errors", base_errors_ + s.errors);
    num("watched_dirs", s.watched_dirs);
    num("changes_pending", received_ - acted_);
    num("batches", batches_);
    num("queue_collapsed", queue_.collapsed());
    num("records", records_);
    num("renames", renames_);
    num("fallback_reconciles", fallbacks_);
    add("last_fallback", last_fallback_);
    num("restarts", restarts_);
    add("last_failure", last_failure_);
    add("last_error", s.last_error.empty() ? last_failure_ : s.last_error);
}

}  // namespace sfs::repl
