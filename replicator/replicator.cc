#include "replicator/replicator.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/unique_fd.h"
#include "replicator/change_tracker.h"
#include "replicator/control_server.h"
#include "replicator/journal.h"
#include "replicator/mirror_replicator.h"
#include "replicator/outside_changes.h"
#include "replicator/state_files.h"

namespace sfs::repl {
namespace ctl = protocol::control;
using Clock = std::chrono::steady_clock;

namespace {

std::string hex64(std::uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016" PRIx64, v);
    return b;
}

std::string absolute(const std::string& path) {
    char* real = ::realpath(path.c_str(), nullptr);
    if (!real) return std::filesystem::absolute(path).lexically_normal().string();
    std::string out = real;
    std::free(real);
    return out;
}

// The stream epoch names this journal's incarnation towards the mirrors (stream_id); a new
// journal (fresh state dir, or one discarded after corruption) gets a new one so the mirror's
// stored "applied seq" of an older journal can never make it skip new records.
Result<std::string> stream_epoch(const std::string& dir, bool fresh) {
    const std::string path = dir + "/stream-epoch";
    if (!fresh) {
        std::ifstream in(path);
        std::string epoch;
        if (in >> epoch && epoch.size() == 16) return epoch;
    }
    std::uint64_t r = 0;
    if (::getrandom(&r, sizeof r, 0) != sizeof r) r = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
    std::string epoch = hex64(r);
    if (auto w = write_file_atomic(dir, "stream-epoch", epoch + "\n"); !w) return std::unexpected(w.error());
    return epoch;
}

}  // namespace

std::vector<std::string> split_mirrors(const std::vector<std::string>& values) {
    std::vector<std::string> out;
    for (const auto& v : values) {
        std::size_t start = 0;
        for (;;) {
            auto semi = v.find(';', start);
            std::string item = v.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
            if (!item.empty()) out.push_back(item);
            if (semi == std::string::npos) break;
            start = semi + 1;
        }
    }
    return out;
}

struct Replicator::Impl {
    ReplicatorOptions options;
    int source_dirfd = -1;
    UniqueFd lock_fd;
    bool was_clean = false;
    std::unique_ptr<Journal> journal;
    std::unique_ptr<ChangeTracker> tracker;
    std::vector<std::unique_ptr<MirrorReplicator>> mirrors;
    std::unique_ptr<ControlServer> control;
    std::thread housekeeper;
    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false;
    bool started = false;
    std::vector<std::uint64_t> saved_cursors;
    std::vector<bool> behind_journal;  // cursor older than the journal at start: checksum reconcile
    std::uint64_t overrun_warned_through = 0;  // journal_max: highest dropped seq already logged
    std::unique_ptr<OutsideChanges> outside;  // the fallback watcher's consumer
    std::unique_ptr<EchoHintSink> echo_sink;

    void housekeeping() {
        std::unique_lock lock(mu);
        while (!stopping) {
            cv.wait_for(lock, std::chrono::milliseconds(200));
            lock.unlock();
            save_cursors_and_trim();
            lock.lock();
        }
    }

    void save_cursors_and_trim() {
        std::uint64_t min_acked = ~0ull;
        for (std::size_t i = 0; i < mirrors.size(); ++i) {
            const std::uint64_t acked = mirrors[i]->acked_seq();
            min_acked = std::min(min_acked, acked);
            if (acked != saved_cursors[i]) {
                if (auto r = save_cursor(options.state_dir, mirrors[i]->url(), acked); r) {
                    saved_cursors[i] = acked;
                } else {
                    spdlog::error("{}", r.error().message);
                }
            }
        }
        // Only records every mirror has (and whose cursor is on disk) may go.
        std::uint64_t saved_min = ~0ull;
        for (auto c : saved_cursors) saved_min = std::min(saved_min, c);
        if (!mirrors.empty()) journal->trim(std::min(min_acked, saved_min));
        enforce_journal_max();
    }

    // A mirror down for long (or far slower than the writers) must not fill the disk that
    // holds the state dir: once that happened the journal could not take records, and
    // mutating FUSE ops would wait for it. Past journal_max, or when the journal cannot be
    // written for want of space, the oldest segments go unsent; each mirror that still
    // needed them finds its records gone when it reads on and reconciles the whole tree
    // with checksums instead (its cursor on disk, older than the journal, does the same at
    // the next mount).
    void enforce_journal_max() {
        const bool full = journal->out_of_space();
        if (!full && (options.journal_max == 0 || journal->stored_bytes() <= options.journal_max)) return;
        const std::uint64_t dropped = journal->trim_to_size(full ? 0 : options.journal_max);
        if (dropped <= overrun_warned_through) return;
        const std::string why = full ? fmt::format("the disk of {} is full", options.state_dir)
                                     : fmt::format("the journal in {} outgrew journal_max={} bytes",
                                                   options.state_dir, options.journal_max);
        for (const auto& m : mirrors) {
            const std::uint64_t acked = m->acked_seq();
            if (acked >= dropped) continue;
            spdlog::warn("mirror {}: {}; records {}..{} it has not acknowledged were dropped, so it will be "
                         "reconciled in full (with checksums)",
                         m->url(), why, std::max(acked + 1, overrun_warned_through + 1), dropped);
        }
        overrun_warned_through = dropped;
    }
};

Replicator::Replicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Replicator::~Replicator() {
    if (impl_) stop(false);
}

const std::string& Replicator::state_dir() const { return impl_->options.state_dir; }

Result<std::unique_ptr<Replicator>> Replicator::create(ReplicatorOptions options, int source_dirfd) {
    auto impl = std::make_unique<Impl>();
    options.source = absolute(options.source);
    if (!options.mountpoint.empty()) options.mountpoint = absolute(options.mountpoint);
    if (options.state_dir.empty()) {
        options.state_dir = "/var/lib/syncfs/" + hex64(XXH3_64bits(options.source.data(), options.source.size()));
    }
    if (options.mirrors.empty()) return fail("no mirror= given");
    if (!options.connector) return fail("internal: no mirror connector");
    std::error_code ec;
    std::filesystem::create_directories(options.state_dir, ec);
    if (ec) return fail(options.state_dir + ": cannot create state directory: " + ec.message());
    ::chmod(options.state_dir.c_str(), 0700);
    options.state_dir = absolute(options.state_dir);

    // One syncfs per state directory.
    const std::string lock_path = options.state_dir + "/lock";
    impl->lock_fd = UniqueFd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!impl->lock_fd) return fail(lock_path + ": " + std::strerror(errno), errno);
    if (::flock(impl->lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
        return fail(options.state_dir + ": state directory is in use by another syncfs (lock held on " + lock_path + ")");
    }

    impl->was_clean = clean_marker_present(options.state_dir);
    if (auto r = remove_clean_marker(options.state_dir); !r) return std::unexpected(r.error());

    std::uint64_t max_cursor = 0;
    for (const auto& m : options.mirrors) max_cursor = std::max(max_cursor, load_cursor(options.state_dir, m));
    bool fresh = false;
    // Segments are the unit of trimming: a quarter of the cap each (a chunk of 256 KiB may
    // overshoot that under a small cap, which then keeps fewer, larger segments).
    const std::uint64_t segment_bytes =
        options.journal_max == 0 ? JournalOptions{}.segment_bytes
                                 : std::min(JournalOptions{}.segment_bytes, options.journal_max / 4);
    auto journal = Journal::open(options.state_dir,
                                 JournalOptions{.segment_bytes = segment_bytes, .start_flusher = false});
    if (!journal) {
        spdlog::error("{}; discarding the journal and reconciling every mirror with checksums", journal.error().message);
        if (auto d = Journal::discard(options.state_dir); !d) return std::unexpected(d.error());
        impl->was_clean = false;
        fresh = true;
        journal = Journal::open(options.state_dir,
                                JournalOptions{.segment_bytes = segment_bytes,
                                               .min_next_seq = max_cursor + 1,
                                               .start_flusher = false});
        if (!journal) return std::unexpected(journal.error());
    }
    impl->journal = std::move(*journal);
    if (impl->journal->last_seq() == 0) {
        // A journal that never held a record: no crash to distrust, the quick check will do.
        if (!fresh) impl->was_clean = true;
        fresh = true;
    }
    if (!impl->was_clean) {
        spdlog::warn("{}: previous stop was not clean (no clean marker): full reconcile with checksums",
                     options.state_dir);
    }
    auto epoch = stream_epoch(options.state_dir, fresh);
    if (!epoch) return std::unexpected(epoch.error());
    spdlog::info("journal {}: seqs {}..{} ({} records replayed, {} torn bytes dropped)", options.state_dir,
                 impl->journal->first_seq(), impl->journal->last_seq(), impl->journal->replay_stats().records,
                 impl->journal->replay_stats().torn_bytes);

    impl->tracker = std::make_unique<ChangeTracker>(*impl->journal, options.mirrors.size(), options.delay);
    for (std::size_t i = 0; i < options.mirrors.size(); ++i) {
        const std::string& url = options.mirrors[i];
        std::uint64_t cursor = fresh ? 0 : load_cursor(options.state_dir, url);
        if (cursor > impl->journal->last_seq()) cursor = 0;
        const bool behind = cursor + 1 < impl->journal->first_seq();
        // Records it never got are gone (journal_max): compare content too. A new mirror
        // (no cursor yet) gets the usual size+mtime pass.
        impl->behind_journal.push_back(behind && cursor > 0);
        if (behind) {
            spdlog::warn("mirror {}: its cursor {} is older than the journal (starts at {}): full reconcile", url,
                         cursor, impl->journal->first_seq());
            cursor = impl->journal->first_seq() - 1;
        }
        MirrorOptions mo;
        mo.url = url;
        mo.secrets_file = options.secrets_file;
        mo.state_dir = options.state_dir;
        mo.stream_id = "syncfs-" + *epoch + "-" + mirror_id(url);
        mo.excludes = options.excludes;
        impl->mirrors.push_back(std::make_unique<MirrorReplicator>(i, std::move(mo), *impl->journal, *impl->tracker,
                                                                   source_dirfd, options.connector, cursor));
        impl->saved_cursors.push_back(cursor);
    }
    if (options.sync) {
        impl->tracker->set_durable_waiter([p = impl.get()](std::uint64_t seq) {
            const auto deadline = Clock::now() + p->options.sync_timeout;
            for (auto& m : p->mirrors) {
                if (int e = m->wait_durable(seq, deadline); e != 0) {
                    spdlog::error("-o sync: mirror {} did not confirm durability within {} ms ({})", m->url(),
                                  p->options.sync_timeout.count(), std::strerror(e));
                    return EIO;
                }
            }
            return 0;
        });
    }
    if (auto w = OutsideChanges::check_mode(options.watch); !w) return std::unexpected(w.error());
    // Outside changes are journaled like the mount's own (docs/watcher.md): through the
    // tracker, so a rename outside also renames the names it keeps for pending writes.
    impl->outside = std::make_unique<OutsideChanges>(
        options.watch, options.excludes, [t = impl->tracker.get()](const fs::ChangeRecord& r) { t->on_change(r); });
    impl->echo_sink = std::make_unique<EchoHintSink>(*impl->tracker, *impl->outside);
    impl->options = std::move(options);
    impl->source_dirfd = source_dirfd;
    return std::unique_ptr<Replicator>(new Replicator(std::move(impl)));
}

Result<void> Replicator::start() {
    Impl& s = *impl_;
    const std::string link = s.options.mountpoint.empty()
                                 ? std::string()
                                 : s.options.run_dir + "/" +
                                       std::filesystem::path(ctl::socket_for_mountpoint(s.options.mountpoint))
                                           .filename()
                                           .string();
    auto control = ControlServer::start(s.options.state_dir + "/control.sock", link,
                                        [this](const ctl::Request& req) -> ctl::Response {
                                            switch (req.command) {
                                                case ctl::Command::Status:
                                                    return ctl::Response{true, {}, status()};
                                                case ctl::Command::Resync:
                                                    resync();
                                                    return ctl::Response{true, {}, {}};
                                                case ctl::Command::Wait: {
                                                    auto timeout = req.timeout_ms == 0
                                                                       ? std::chrono::milliseconds(1ll << 40)
                                                                       : std::chrono::milliseconds(req.timeout_ms);
                                                    std::string why = wait(timeout);
                                                    if (why.empty()) return ctl::Response{true, {}, {}};
                                                    return ctl::Response{false, why, {}};
                                                }
                                            }
                                            return ctl::Response{false, "unknown command", {}};
                                        });
    if (!control) return std::unexpected(control.error());
    s.control = std::move(*control);
    s.journal->start_flusher();
    // Before the initial reconcile: a change made outside the mount during it is reported.
    if (auto w = s.outside->start(s.source_dirfd, s.options.source); !w) return std::unexpected(w.error());
    for (std::size_t i = 0; i < s.mirrors.size(); ++i) {
        s.mirrors[i]->start(/*reconcile=*/true, /*checksum=*/!s.was_clean || s.behind_journal[i]);
    }
    s.housekeeper = std::thread([&s] { s.housekeeping(); });
    s.started = true;
    spdlog::info("replicating {} to {} mirror(s); state {}", s.options.source, s.mirrors.size(), s.options.state_dir);
    return {};
}

fs::ChangeSink& Replicator::sink() {
    if (impl_->outside->enabled()) return *impl_->echo_sink;
    return *impl_->tracker;
}

void Replicator::set_invalidator(std::function<void(const std::string& path, bool subtree)> fn) {
    impl_->outside->set_invalidator(std::move(fn));
}

void Replicator::stop(bool clean) {
    Impl& s = *impl_;
    {
        std::lock_guard lock(s.mu);
        if (s.stopping) return;
    }
    // The FUSE session has ended: act on the outside changes delivered so far.
    s.outside->stop();
    if (clean && s.started) {
        std::string why = wait(s.options.stop_grace);
        if (!why.empty()) spdlog::warn("stopping with changes not yet on every mirror (kept in the journal): {}", why);
    }
    {
        std::lock_guard lock(s.mu);
        s.stopping = true;
    }
    s.cv.notify_all();
    s.control.reset();
    for (auto& m : s.mirrors) m->stop();
    if (s.housekeeper.joinable()) s.housekeeper.join();
    const std::uint64_t last = s.journal->last_seq();
    // A journal that cannot be written for want of space gets a short wait only: the
    // unmount must not hang on it (without the clean marker the next mount reconciles).
    const auto flush_wait = s.journal->out_of_space() ? std::chrono::seconds(3) : std::chrono::seconds(30);
    const bool flushed = s.started && s.journal->wait_durable(last, flush_wait);
    if (!s.mirrors.empty()) s.save_cursors_and_trim();
    if (clean && flushed) {
        if (auto r = write_clean_marker(s.options.state_dir); !r) spdlog::error("{}", r.error().message);
    }
    s.journal.reset();
}

ctl::Fields Replicator::status() const {
    const Impl& s = *impl_;
    ctl::Fields f;
    auto add = [&](std::string k, auto v) {
        if constexpr (std::is_same_v<decltype(v), bool>) {
            f.emplace_back(std::move(k), v ? "true" : "false");
        } else if constexpr (std::is_arithmetic_v<decltype(v)>) {
            f.emplace_back(std::move(k), std::to_string(v));
        } else {
            f.emplace_back(std::move(k), std::string(v));
        }
    };
    add("source", s.options.source);
    add("mountpoint", s.options.mountpoint);
    add("state_dir", s.options.state_dir);
    add("sync", s.options.sync);
    add("journal.last_seq", s.journal->last_seq());
    add("journal.durable_seq", s.journal->durable_seq());
    add("journal.first_seq", s.journal->first_seq());
    add("journal.bytes", s.journal->stored_bytes());
    add("journal.max", s.options.journal_max);  // 0: no cap
    add("journal.error", s.journal->last_error());
    s.outside->add_status(f);
    add("mirrors", s.mirrors.size());
    for (std::size_t i = 0; i < s.mirrors.size(); ++i) {
        MirrorStatus m = s.mirrors[i]->status();
        const std::string p = "mirror." + std::to_string(i) + ".";
        add(p + "url", m.url);
        add(p + "connected", m.connected);
        add(p + "state", m.state);
        add(p + "acked_seq", m.acked_seq);
        add(p + "backlog_ops", m.backlog_ops);
        add(p + "backlog_bytes", m.backlog_bytes);
        add(p + "lag_ms", m.lag_ms);
        add(p + "last_ack_unix_ms", m.last_ack_unix_ms);
        add(p + "bytes_sent", m.bytes_sent);
        add(p + "reconnects", m.reconnects);
        add(p + "errors", m.errors);
        add(p + "last_error", m.last_error);
        add(p + "last_error_unix_ms", m.last_error_unix_ms);
        add(p + "reconcile_pending", m.reconcile_pending);
        add(p + "reconcile_progress", m.reconcile_progress);
        add(p + "outside_verified", m.outside_verified);
        add(p + "outside_changed", m.outside_changed);
        add(p + "outside_renames", m.outside_renames);
    }
    return f;
}

namespace {

// "mirror URL has acknowledged seq A of T (connected, idle, last error: ...)": what a
// timed-out wait tells the operator about one mirror.
std::string describe_lag(const MirrorStatus& st, std::uint64_t target) {
    return "mirror " + st.url + " has acknowledged seq " + std::to_string(st.acked_seq) + " of " +
           std::to_string(target) + " (" + (st.connected ? "connected" : "not connected") + ", " + st.state +
           (st.reconcile_pending ? ", reconcile pending" : "") +
           (st.last_error.empty() ? std::string() : ", last error: " + st.last_error) + ")";
}

}  // namespace

std::string Replicator::wait(std::chrono::milliseconds timeout) {
    Impl& s = *impl_;
    const auto deadline = Clock::now() + timeout;
    // Outside changes seen before the call become reconcile requests first.
    if (!s.outside->flush(deadline)) {
        // Say why they are still pending: usually a mirror that refuses them.
        std::string why = "timeout: outside changes seen by the watcher not yet handled";
        for (auto& m : s.mirrors) why += "; " + describe_lag(m->status(), s.journal->last_seq());
        return why;
    }
    const std::uint64_t target = s.journal->last_seq();
    for (auto& m : s.mirrors) {
        while (!m->wait_settled(target, std::min(deadline, Clock::now() + std::chrono::milliseconds(200)))) {
            {
                std::lock_guard lock(s.mu);
                if (s.stopping) return "syncfs is stopping";
            }
            if (Clock::now() >= deadline) return "timeout: " + describe_lag(m->status(), target);
        }
    }
    return {};
}

void Replicator::note_outside_change(const std::string& path, bool subtree) {
    fs::ChangeRecord r;
    r.kind = fs::ChangeKind::Verify;
    r.path = path;
    r.flags = subtree ? fs::kVerifySubtree : 0;
    impl_->tracker->on_change(r);
}

void Replicator::resync() {
    spdlog::info("resync requested: reconciling every mirror");
    for (auto& m : impl_->mirrors) m->request_resync(false);
}

}  // namespace sfs::repl
