#include "replicator/mirror_replicator.h"

#include "replicator/background_priority.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/unique_fd.h"
#include "replicator/reconcile.h"  // excluded(), reconcile_tree()

namespace sfs::repl {
namespace proto = protocol::native;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kMaxVerifyBatch = 4096;  // Verify records handled in one batch

std::string parent_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

proto::Timestamp ts(const timespec& t) {
    return proto::Timestamp{static_cast<std::int64_t>(t.tv_sec), static_cast<std::uint32_t>(t.tv_nsec)};
}

bool has_time(const timespec& t) { return t.tv_sec != 0 || t.tv_nsec != 0; }

}  // namespace

MirrorReplicator::MirrorReplicator(std::size_t index, MirrorOptions options, Journal& journal, ChangeTracker& tracker,
                                   int source_dirfd, MirrorConnector connector, std::uint64_t cursor)
    : index_(index),
      options_(std::move(options)),
      journal_(journal),
      tracker_(tracker),
      source_dirfd_(source_dirfd),
      connector_(std::move(connector)) {
    acked_ = cursor;
    position_ = cursor;
    status_.url = options_.url;
    status_.state = "stopped";
}

MirrorReplicator::~MirrorReplicator() { stop(); }

void MirrorReplicator::start(bool reconcile, bool checksum) {
    {
        std::lock_guard lock(mu_);
        reconcile_wanted_ = reconcile;
        reconcile_checksum_ = checksum;
    }
    thread_ = std::thread([this] {
        lower_this_thread_priority();
        run();
    });
}

void MirrorReplicator::stop() {
    stop_ = true;
    cv_.notify_all();
    {
        std::lock_guard lock(mu_);
        if (conn_) conn_->shutdown();
    }
    if (thread_.joinable()) thread_.join();
}

std::uint64_t MirrorReplicator::now_unix_ms() const {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
}

void MirrorReplicator::set_error(const std::string& message) {
    spdlog::error("mirror {}: {}", options_.url, message);
    std::lock_guard lock(mu_);
    status_.last_error = message;
    status_.last_error_unix_ms = static_cast<std::int64_t>(now_unix_ms());
    ++status_.errors;
}

bool MirrorReplicator::raced_with_reconcile(std::uint64_t op_seq, int err) const {
    const bool namespace_conflict = err == EEXIST || err == ENOENT || err == ENOTEMPTY || err == ENOTDIR;
    const std::uint64_t record = op_seq >> kSubSeqBits;
    return namespace_conflict && record > raced_after_ && record <= raced_through_ && op_seq > raced_ops_after_ &&
           op_seq <= raced_ops_until_;
}

void MirrorReplicator::set_state(const char* state) {
    std::lock_guard lock(mu_);
    status_.state = state;
}

void MirrorReplicator::progress(const std::string& line) {
    spdlog::info("mirror {}: {}", options_.url, line);
    std::lock_guard lock(mu_);
    status_.reconcile_progress = line;
}

void MirrorReplicator::run() {
    auto backoff = options_.backoff_min;
    while (!stop_) {
        set_state("connecting");
        auto conn = connector_(options_.url, options_.secrets_file, options_.stream_id);
        if (!conn) {
            set_error(conn.error().message);
        } else {
            {
                std::lock_guard lock(mu_);
                conn_ = conn->get();
                connected_ = true;
                reader_failed_ = false;
                reader_error_code_ = 0;
                closing_ = false;
                status_.connected = true;
                cum_ack_ = std::max(cum_ack_, (*conn)->hello().applied_seq);
            }
            if (stop_) (*conn)->shutdown();
            spdlog::info("mirror {}: connected (mirror has applied seq {})", options_.url, (*conn)->hello().applied_seq);
            std::thread reader([this, c = conn->get()] {
                lower_this_thread_priority();
                reader_loop(*c);
            });
            auto r = session(**conn);
            if (!r && !stop_) {
                bool reader_told = false;
                {
                    std::lock_guard lock(mu_);
                    reader_told = reader_failed_ && !status_.last_error.empty() &&
                                  !(r.error().code == ETIMEDOUT && reader_error_code_ != ETIMEDOUT);
                }
                // When the reader saw the connection fail, its error (already in status) is
                // the cause; the session's "connection lost" is only the consequence. Except
                // a timeout: after TCP_USER_TIMEOUT aborts the socket, whichever side reads
                // the error first gets ETIMEDOUT and the other sees the connection closed.
                if (reader_told) {
                    spdlog::error("mirror {}: {}", options_.url, r.error().message);
                    std::lock_guard lock(mu_);
                    ++status_.errors;
                } else {
                    set_error(r.error().message);
                }
                // The mirror may have died mid-op (a temp file left behind, an op applied
                // but its seq not stored): check the whole tree once it is back.
                std::lock_guard lock(mu_);
                reconcile_wanted_ = true;
            }
            {
                std::lock_guard lock(mu_);
                closing_ = true;  // the reader's "connection shut down" must not hide the cause
            }
            (*conn)->shutdown();
            reader.join();
            {
                std::lock_guard lock(mu_);
                status_.bytes_sent += (*conn)->bytes_sent();
                conn_ = nullptr;
                connected_ = false;
                status_.connected = false;
                if (!stop_) ++status_.reconnects;
                // Queries still waiting get no reply now.
                for (auto& q : queries_) q->finished = true;
                queries_.clear();
                durable_barrier_id_ = 0;
            }
            cv_.notify_all();
            conn->reset();
            if (r) backoff = options_.backoff_min;  // a clean session end resets the backoff
        }
        if (stop_) break;
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, backoff, [&] { return stop_.load(); });
        backoff = std::min(options_.backoff_max, backoff * 2);
    }
    set_state("stopped");
}

void MirrorReplicator::reader_loop(MirrorConnection& conn) {
    for (;;) {
        auto msg = conn.receive();
        std::unique_lock lock(mu_);
        if (!msg) {
            const bool report = !stop_ && !reader_failed_ && !closing_;
            if (report) {
                reader_error_code_ = msg.error().code;
                status_.last_error = msg.error().message;
                status_.last_error_unix_ms = static_cast<std::int64_t>(now_unix_ms());
            }
            reader_failed_ = true;
            lock.unlock();
            if (report) spdlog::error("mirror {}: {}", options_.url, msg.error().message);
            cv_.notify_all();
            return;
        }
        bool fatal = false;
        std::visit(
            [&](auto& m) {
                using T = std::decay_t<decltype(m)>;
                if constexpr (std::is_same_v<T, proto::Ack>) {
                    if (m.flags & proto::kAckCumulative) {
                        cum_ack_ = std::max(cum_ack_, m.seq);
                        status_.last_ack_unix_ms = static_cast<std::int64_t>(now_unix_ms());
                        while (!inflight_.empty() && inflight_.front().last_seq <= cum_ack_) {
                            acked_ = std::max(acked_, inflight_.front().record);
                            inflight_bytes_ -= inflight_.front().bytes;
                            inflight_.pop_front();
                        }
                        if (settle_seq_ <= cum_ack_) settled_ = std::max(settled_, settle_position_);
                    } else if (raced_with_reconcile(m.seq, m.err)) {
                        // Not an error: the walk already sent the newer tree. The quick pass
                        // that a walk with racing changes always gets (bounded, see the
                        // judging of a pass) reports anything still different.
                        spdlog::info("mirror {}: op {} of a change made during the reconcile walk: {} "
                                     "(expected, the walk sent the newer tree; checking again)",
                                     options_.url, m.seq, m.message.empty() ? std::strerror(m.err) : m.message);
                    } else {
                        ++op_errors_in_pass_;
                        ++status_.errors;
                        status_.last_error = m.message.empty() ? std::strerror(m.err) : m.message;
                        status_.last_error_unix_ms = static_cast<std::int64_t>(now_unix_ms());
                        // Compare content, not just size+mtime: the Setattr that follows a
                        // failed WriteRange makes a wrong file look right to the quick check.
                        reconcile_wanted_ = true;
                        reconcile_checksum_ = true;
                        spdlog::error("mirror {}: op {} failed: {}", options_.url, m.seq, status_.last_error);
                    }
                } else if constexpr (std::is_same_v<T, proto::ListChunk>) {
                    if (!queries_.empty()) {
                        auto& e = queries_.front()->entries;
                        e.insert(e.end(), std::make_move_iterator(m.entries.begin()),
                                 std::make_move_iterator(m.entries.end()));
                    }
                } else if constexpr (std::is_same_v<T, proto::SignatureChunk>) {
                    if (!queries_.empty()) {
                        auto& d = queries_.front()->data;
                        d.insert(d.end(), m.data.begin(), m.data.end());
                    }
                } else if constexpr (std::is_same_v<T, proto::Done>) {
                    if (m.id == durable_barrier_id_ && durable_barrier_id_ != 0) {
                        if (m.err == 0) durable_ = std::max(durable_, durable_barrier_position_);
                        durable_barrier_id_ = 0;
                    }
                    if (!queries_.empty() && queries_.front()->id == m.id) {
                        queries_.front()->done = std::move(m);
                        queries_.front()->finished = true;
                        queries_.pop_front();
                    }
                } else if constexpr (std::is_same_v<T, proto::Fatal>) {
                    status_.last_error = "mirror closed the session: " + m.message;
                    status_.last_error_unix_ms = static_cast<std::int64_t>(now_unix_ms());
                    ++status_.errors;
                    fatal = true;
                }
            },
            *msg);
        if (fatal) reader_failed_ = true;
        lock.unlock();
        cv_.notify_all();
        if (fatal) return;
    }
}

bool MirrorReplicator::lists_xattrs() const {
    return conn_ != nullptr && conn_->hello().version >= proto::kXattrListVersion;
}

std::uint64_t MirrorReplicator::next_seq() {
    last_sent_seq_ = std::max(last_sent_seq_ + 1, position_ << kSubSeqBits);
    return last_sent_seq_;
}

Result<void> MirrorReplicator::send(const proto::Message& message) {
    {
        std::lock_guard lock(mu_);
        if (reader_failed_) return fail("connection to " + options_.url + " lost");
    }
    return conn_->send(message);
}

Result<void> MirrorReplicator::mutate(proto::Message message) {
    const std::uint64_t seq = next_seq();
    std::visit(
        [&](auto& m) {
            if constexpr (requires { m.seq; }) m.seq = seq;
        },
        message);
    return send(message);
}

std::shared_ptr<MirrorReplicator::Query> MirrorReplicator::start_query() {
    auto q = std::make_shared<Query>();
    q->id = next_query_id_++;
    std::lock_guard lock(mu_);
    queries_.push_back(q);
    return q;
}

Result<std::shared_ptr<MirrorReplicator::Query>> MirrorReplicator::finish_query(std::shared_ptr<Query> q) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return q->finished || reader_failed_ || stop_; });
    if (!q->finished || (reader_failed_ && q->done.id != q->id)) return fail("connection to " + options_.url + " lost");
    return q;
}

Result<std::vector<proto::ListEntry>> MirrorReplicator::list(const std::string& path, std::uint32_t flags,
                                                             std::string& incomplete) {
    auto q = start_query();
    if (auto r = send(proto::ListRequest{q->id, path, flags}); !r) return std::unexpected(r.error());
    auto done = finish_query(q);
    if (!done) return std::unexpected(done.error());
    if ((*done)->done.err != 0) {
        return fail(options_.url + ": listing '" + path + "' failed: " + (*done)->done.message, (*done)->done.err);
    }
    incomplete = (*done)->done.message;
    return std::move((*done)->entries);
}

Result<std::vector<std::uint8_t>> MirrorReplicator::signature(const std::string& path) {
    auto q = start_query();
    if (auto r = send(proto::SignatureRequest{q->id, path, 0, 0}); !r) return std::unexpected(r.error());
    auto done = finish_query(q);
    if (!done) return std::unexpected(done.error());
    if ((*done)->done.err != 0) {
        return fail(options_.url + ": signature of '" + path + "' failed: " + (*done)->done.message, (*done)->done.err);
    }
    return std::move((*done)->data);
}

Result<std::vector<Result<std::vector<proto::ListEntry>>>> MirrorReplicator::list_many(
    const std::vector<std::pair<std::string, std::uint32_t>>& requests) {
    std::vector<std::shared_ptr<Query>> queries;
    queries.reserve(requests.size());
    for (const auto& [path, flags] : requests) {
        auto q = start_query();
        if (auto r = send(proto::ListRequest{q->id, path, flags}); !r) return std::unexpected(r.error());
        queries.push_back(std::move(q));
    }
    std::vector<Result<std::vector<proto::ListEntry>>> out;
    out.reserve(queries.size());
    for (std::size_t i = 0; i < queries.size(); ++i) {
        auto done = finish_query(queries[i]);
        if (!done) return std::unexpected(done.error());
        if ((*done)->done.err != 0) {
            out.push_back(fail(options_.url + ": listing '" + requests[i].first + "' failed: " + (*done)->done.message,
                               (*done)->done.err));
        } else {
            out.push_back(std::move((*done)->entries));
        }
    }
    return out;
}

void MirrorReplicator::complete_records_below(std::uint64_t record) {
    // Every op sent so far belongs to a record below `record`: those records are complete
    // once it is acked (a record that sent nothing completes with the ones before it).
    for (auto& f : inflight_) {
        if (f.record >= record || f.last_seq != ~0ull) continue;
        f.last_seq = last_sent_seq_ >= (f.record << kSubSeqBits) ? last_sent_seq_ : 0;
        inflight_bytes_ += f.bytes;
    }
    while (!inflight_.empty() && inflight_.front().last_seq <= cum_ack_) {
        acked_ = std::max(acked_, inflight_.front().record);
        inflight_bytes_ -= inflight_.front().bytes;
        inflight_.pop_front();
    }
}

void MirrorReplicator::set_record(std::uint64_t journal_seq) {
    if (journal_seq <= position_) return;
    std::lock_guard lock(mu_);
    complete_records_below(journal_seq);
    position_ = journal_seq;
}

void MirrorReplicator::note_stamped(const std::string& path) {
    if (stamped_all_) return;
    if (stamped_.size() >= kMaxStamped) {
        stamped_.clear();
        stamped_all_ = true;
        return;
    }
    stamped_.insert(path);
}

bool MirrorReplicator::is_stamped(const std::string& path) const { return stamped_all_ || stamped_.count(path) != 0; }

// The items' files were compared with SOURCE as it is now: stamps made before no longer hide
// anything there.
void MirrorReplicator::verified(const std::vector<VerifyItem>& items) {
    for (const auto& it : items) {
        if (it.subtree && it.path.empty()) {
            stamped_.clear();
            stamped_all_ = false;
            return;
        }
        if (!it.subtree) {
            stamped_.erase(it.path);
            continue;
        }
        for (auto s = stamped_.lower_bound(it.path); s != stamped_.end() && s->starts_with(it.path);) {
            s = s->size() == it.path.size() || (*s)[it.path.size()] == '/' ? stamped_.erase(s) : std::next(s);
        }
    }
}

Result<void> MirrorReplicator::send_verify(const std::vector<DecodedRecord>& group) {
    std::vector<VerifyItem> items;
    {
        std::lock_guard lock(mu_);
        for (const auto& rec : group) inflight_.push_back(InFlight{rec.seq, ~0ull, {}, 0});
    }
    for (const auto& rec : group) {
        if (excluded(options_.excludes, rec.record.path)) continue;
        items.push_back(VerifyItem{rec.record.path, (rec.record.flags & fs::kVerifySubtree) != 0, rec.seq});
        if (!rec.record.path.empty()) mark_attr_dirty(rec.record.path, false);  // its directory's mtime
    }
    position_ = group.front().seq;
    const std::vector<VerifyItem> looked_at = items;
    auto outcome = reconcile_paths(*this, source_dirfd_, options_.excludes, std::move(items), lists_xattrs(),
                                   [this](const std::string& p) { return is_stamped(p); });
    position_ = std::max(position_, group.back().seq);
    // Connection lost: the records stay unacknowledged (a listing consumes no seq, so
    // completing them here would count them as done); the next session redoes them.
    if (!outcome) return fail(outcome.error().message.empty() ? "connection to " + options_.url + " lost"
                                                              : outcome.error().message);
    verified(looked_at);
    std::lock_guard lock(mu_);
    complete_records_below(group.back().seq + 1);
    status_.outside_verified += outcome->verified;
    status_.outside_changed += outcome->changed;
    for (const auto& dir : outcome->touched_dirs) attr_dirty_.emplace(dir, Clock::time_point{});
    if (outcome->needs_full) {
        // A listing the mirror could not complete.
        reconcile_wanted_ = true;
    }
    return {};
}

Result<void> MirrorReplicator::send_outside_rename(const DecodedRecord& rec) {
    const fs::ChangeRecord& r = rec.record;
    {
        std::lock_guard lock(mu_);
        inflight_.push_back(InFlight{rec.seq, ~0ull, {}, 0});
    }
    // A rename is only safe when the mirror has the source, SOURCE has the target with the
    // same type, the target's directory exists on the mirror and no directory is replaced
    // (the source's rename succeeded, so such a directory was empty there, but the mirror's
    // copy may not be yet). Otherwise the verification below sends what is needed.
    std::vector<std::pair<std::string, std::uint32_t>> req{{r.path, 0u}, {r.path2, 0u}, {parent_of(r.path2), 0u}};
    auto got = list_many(req);
    if (!got) return std::unexpected(got.error());  // not completed: redone after reconnect
    auto entry = [](const Result<std::vector<proto::ListEntry>>& l) -> const proto::ListEntry* {
        return l && !l->empty() ? &l->front() : nullptr;
    };
    const proto::ListEntry* from = entry((*got)[0]);
    const proto::ListEntry* to = entry((*got)[1]);
    const proto::ListEntry* to_dir = entry((*got)[2]);
    struct stat st{};
    const bool target_in_source = ::fstatat(source_dirfd_, r.path2.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    const bool from_is_dir = from && from->type == proto::NodeType::Directory;
    const bool ok = from && target_in_source && from_is_dir == S_ISDIR(st.st_mode) &&
                    (r.path2.find('/') == std::string::npos || (to_dir && to_dir->type == proto::NodeType::Directory)) &&
                    !(to && (to->type == proto::NodeType::Directory || from_is_dir)) &&
                    !excluded(options_.excludes, r.path) && !excluded(options_.excludes, r.path2);
    Result<void> result;
    mark_attr_dirty(r.path, false);  // both directories changed in SOURCE
    mark_attr_dirty(r.path2, false);
    if (ok) {
        result = mutate(proto::Rename{0, r.path, r.path2, 0});
        attr_dirty_moved(r.path, r.path2, false);
        std::lock_guard lock(mu_);
        ++status_.outside_renames;
    } else {
        spdlog::debug("mirror {}: outside rename '{}' -> '{}' sent as content (mirror has source: {})", options_.url,
                      r.path, r.path2, from != nullptr);
    }
    if (result) {
        // The new name (a mis-paired move, or writes after it) and the old one (it may exist
        // again in SOURCE, or still on the mirror when the rename was not sent).
        std::vector<VerifyItem> items{{r.path2, true, rec.seq}, {r.path, true, rec.seq}};
        const std::vector<VerifyItem> looked_at = items;
        auto outcome = reconcile_paths(*this, source_dirfd_, options_.excludes, std::move(items), lists_xattrs(),
                                       [this](const std::string& p) { return is_stamped(p); });
        if (!outcome) {
            result = fail(outcome.error().message);
        } else {
            verified(looked_at);
            for (const auto& dir : outcome->touched_dirs) attr_dirty_.emplace(dir, Clock::time_point{});
            std::lock_guard lock(mu_);
            status_.outside_verified += outcome->verified;
            status_.outside_changed += outcome->changed;
            if (outcome->needs_full) reconcile_wanted_ = true;
        }
    }
    if (!result) return result;  // not completed: redone after reconnect
    std::lock_guard lock(mu_);
    complete_records_below(rec.seq + 1);
    return result;
}

Result<void> MirrorReplicator::wait_window() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] {
        return (inflight_.size() < options_.max_inflight_records && inflight_bytes_ < options_.max_inflight_bytes) ||
               reader_failed_ || stop_;
    });
    if (reader_failed_) return fail("connection to " + options_.url + " lost");
    return {};
}

Result<void> MirrorReplicator::send_node_time(const fs::ChangeRecord& r) {
    // A new node: the mirror made it "now"; the record carries SOURCE's time of it. Sent
    // at once, as the node is at this position of the journal (a time flushed later by
    // path could miss the node: a hard link whose first name is gone by then, or a name
    // SOURCE has reused). Records without a time (tests, hand-made) fall back to the flush.
    mark_attr_dirty(r.path, !has_time(r.mtime));
    if (!has_time(r.mtime)) return {};
    return send(proto::Setattr{next_seq(), r.path, proto::kAttrMtime, 0, 0, 0, 0, {}, ts(r.mtime)});
}

void MirrorReplicator::mark_attr_dirty(const std::string& path, bool node_itself) {
    if (node_itself) attr_dirty_.emplace(path, Clock::time_point{});
    attr_dirty_.emplace(parent_of(path), Clock::time_point{});
}

namespace {
bool at_or_below(const std::string& path, const std::string& dir) {
    return path == dir || (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

// Removes the keys at or below `dir` (they are among the run of keys starting with it).
std::vector<std::string> extract_at_or_below(std::map<std::string, Clock::time_point>& m, const std::string& dir) {
    std::vector<std::string> out;
    for (auto it = m.lower_bound(dir); it != m.end() && it->first.starts_with(dir);) {
        if (at_or_below(it->first, dir)) {
            out.push_back(it->first);
            it = m.erase(it);
        } else {
            ++it;
        }
    }
    return out;
}
}  // namespace

void MirrorReplicator::attr_dirty_moved(const std::string& from, const std::string& to, bool exchange) {
    // Pending times follow a rename (the mirror has those nodes under the new name now, and
    // they need their time again); what the rename replaced is gone.
    std::vector<std::string> moved, back;
    for (auto* m : {&attr_dirty_, &attr_unsure_}) {
        for (auto& p : extract_at_or_below(*m, from)) moved.push_back(std::move(p));
        for (auto& p : extract_at_or_below(*m, to)) {
            if (exchange) back.push_back(std::move(p));
        }
    }
    for (const auto& p : moved) attr_dirty_.emplace(to + p.substr(from.size()), Clock::time_point{});
    for (const auto& p : back) attr_dirty_.emplace(from + p.substr(to.size()), Clock::time_point{});
}

void MirrorReplicator::attr_dirty_removed(const std::string& path) {
    extract_at_or_below(attr_dirty_, path);
    extract_at_or_below(attr_unsure_, path);
}

Result<void> MirrorReplicator::send_record(const DecodedRecord& rec) {
    using K = fs::ChangeKind;
    const fs::ChangeRecord& r = rec.record;
    if (r.kind == K::Verify) return send_verify({rec});
    if (r.kind == K::Rename && (r.flags & fs::kRenameFromOutside)) return send_outside_rename(rec);
    {
        std::lock_guard lock(mu_);
        inflight_.push_back(InFlight{rec.seq, ~0ull, {}, 0});
    }
    Result<void> result;
    const NodeKey key{r.ino, rec.epoch};
    auto seq = [&] { return next_seq(); };
    // exclude=: excluded paths never reach the mirror. A rename or link across the boundary
    // moves a node in or out of view: the next reconcile sends or deletes it.
    const bool ex1 = excluded(options_.excludes, r.path);
    const bool two = r.kind == K::Rename || r.kind == K::Link;
    const bool ex2 = two && excluded(options_.excludes, r.path2);
    if (ex1 || ex2) {
        if (r.kind == K::Write) (void)tracker_.take_ranges(index_, key, rec.seq, r.offset, r.length);
        if (two && ex1 != ex2) {
            std::lock_guard lock(mu_);
            reconcile_wanted_ = true;
        }
        std::lock_guard lock(mu_);
        inflight_.back().last_seq = 0;  // nothing sent for it
        while (!inflight_.empty() && inflight_.front().last_seq <= cum_ack_) {
            acked_ = std::max(acked_, inflight_.front().record);
            inflight_bytes_ -= inflight_.front().bytes;
            inflight_.pop_front();
        }
        return {};
    }
    switch (r.kind) {
        case K::Mkdir:
            result = send(proto::Mkdir{seq(), r.path, static_cast<std::uint32_t>(r.mode & 07777), r.uid, r.gid});
            mark_attr_dirty(r.path, true);
            break;
        case K::Create:
            result = send(proto::Create{seq(), r.path, static_cast<std::uint32_t>(r.mode & 07777), r.uid, r.gid});
            if (result) result = send_node_time(r);
            break;
        case K::Mknod:
            if (S_ISREG(r.mode)) {
                result = send(proto::Create{seq(), r.path, static_cast<std::uint32_t>(r.mode & 07777), r.uid, r.gid});
            } else {
                result = send(proto::Mknod{seq(), r.path, static_cast<std::uint32_t>(r.mode),
                                           static_cast<std::uint64_t>(r.rdev), r.uid, r.gid});
            }
            if (result) result = send_node_time(r);
            break;
        case K::Symlink:
            result = send(proto::Symlink{seq(), r.path, r.target, r.uid, r.gid});
            if (result) result = send_node_time(r);
            break;
        case K::Link:
            result = send(proto::Link{seq(), r.path, r.path2});
            mark_attr_dirty(r.path, false);
            break;
        case K::Rename:
            result = send(proto::Rename{seq(), r.path, r.path2, r.flags & proto::kRenameAll});
            attr_dirty_moved(r.path, r.path2, (r.flags & proto::kRenameExchange) != 0);
            mark_attr_dirty(r.path, false);
            mark_attr_dirty(r.path2, false);
            break;
        case K::Unlink:
            result = send(proto::Unlink{seq(), r.path});
            attr_dirty_removed(r.path);
            mark_attr_dirty(r.path, false);
            if (r.nlink == 0) tracker_.drop(index_, key);
            break;
        case K::Rmdir:
            result = send(proto::Rmdir{seq(), r.path});
            attr_dirty_removed(r.path);
            mark_attr_dirty(r.path, false);
            break;
        case K::Setattr: {
            proto::Setattr m{seq(), r.path, r.attr_mask & proto::kAttrAll, static_cast<std::uint32_t>(r.mode & 07777),
                             r.uid, r.gid, r.size, ts(r.atime), ts(r.mtime)};
            // A truncate moves the mirror's mtime too: give it SOURCE's, which the record
            // carries (the node's attributes right after the op).
            const bool size_only = (r.attr_mask & fs::kAttrSize) && !(r.attr_mask & fs::kAttrMtime);
            if (size_only && has_time(r.mtime)) m.mask |= proto::kAttrMtime;
            result = send(m);
            if (size_only && !has_time(r.mtime)) attr_dirty_.emplace(r.path, Clock::time_point{});
            break;
        }
        case K::Setxattr:
            result = send(proto::Setxattr{seq(), r.path, r.xattr_name, r.xattr_value});
            break;
        case K::Removexattr:
            result = send(proto::Removexattr{seq(), r.path, r.xattr_name});
            break;
        case K::Write:
            result = send_write(rec, inflight_.back());
            break;
        case K::Verify:  // handled above
            break;
    }
    // The record is complete once every seq up to the last one used is acked. A record that
    // sent nothing completes with the ones before it.
    std::lock_guard lock(mu_);
    InFlight& f = inflight_.back();
    f.last_seq = last_sent_seq_ >= (rec.seq << kSubSeqBits) ? last_sent_seq_ : 0;
    inflight_bytes_ += f.bytes;
    while (!inflight_.empty() && inflight_.front().last_seq <= cum_ack_) {
        acked_ = std::max(acked_, inflight_.front().record);
        inflight_bytes_ -= inflight_.front().bytes;
        inflight_.pop_front();
    }
    return result;
}

Result<void> MirrorReplicator::send_write(const DecodedRecord& rec, InFlight& flight) {
    const fs::ChangeRecord& r = rec.record;
    const NodeKey key{r.ino, rec.epoch};
    auto ranges = tracker_.take_ranges(index_, key, rec.seq, r.offset, r.length);
    if (ranges.empty()) return {};
    {
        std::lock_guard lock(mu_);
        // `flight` is inflight_.back(): only this thread pushes, the reader pops other entries.
        flight.taken.push_back(InFlight::Taken{key, ranges, tracker_.taken_through(index_, key)});
    }
    // Open the node in SOURCE by its current name. The fs renames/unlinks on SOURCE a moment
    // before it reports the change, so a miss while the map still calls the node alive is
    // retried briefly; once the map drops the node it is really gone (a later record removes
    // it on the mirror). A node not seen live (an older process) is tried at the record's path.
    UniqueFd fd;
    struct stat st{};
    std::optional<std::string> src;
    for (int attempt = 0; attempt < 200; ++attempt) {
        src = tracker_.source_path(key);
        if (!src && !tracker_.knows(key.ino) && attempt == 0) src = r.path;
        if (!src) break;
        fd = UniqueFd(::openat(source_dirfd_, src->empty() ? "." : src->c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (fd && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == key.ino) break;
        fd.reset();
        if (!tracker_.knows(key.ino)) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!fd) {
        spdlog::debug("mirror {}: '{}' (ino {}) is gone from SOURCE; its data is not sent", options_.url, r.path, key.ino);
        return {};
    }
    std::vector<std::uint8_t> buf;
    const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    for (const ByteRange& range : ranges) {
        std::uint64_t off = range.offset;
        const std::uint64_t end = std::min(size, range.offset + range.length);
        while (off < end) {
            if (auto w = wait_window(); !w) return w;
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(end - off, proto::kMaxChunk));
            buf.resize(n);
            ssize_t got = ::pread(fd.get(), buf.data(), n, static_cast<off_t>(off));
            if (got <= 0) {
                if (got < 0) spdlog::warn("mirror {}: reading '{}' from SOURCE: {}", options_.url, *src, std::strerror(errno));
                break;  // shrunk meanwhile: a later Setattr/Write record covers it
            }
            buf.resize(static_cast<std::size_t>(got));
            if (auto s = send(proto::WriteRange{next_seq(), r.path, off, buf}); !s) return s;
            {
                std::lock_guard lock(mu_);
                flight.bytes += static_cast<std::uint64_t>(got);
                inflight_bytes_ += static_cast<std::uint64_t>(got);
            }
            off += static_cast<std::uint64_t>(got);
        }
    }
    // The mirror's in-place write moved its mtime; the source's size and mtime are the truth.
    note_stamped(r.path);
    if (src && *src != r.path) note_stamped(*src);
    proto::Setattr fix{next_seq(), r.path, proto::kAttrSize | proto::kAttrMtime, 0, 0, 0, size, {}, ts(st.st_mtim)};
    {
        std::lock_guard lock(mu_);
        inflight_bytes_ -= flight.bytes;  // counted again when the record completes
    }
    return send(fix);
}

Result<void> MirrorReplicator::flush_attrs() {
    // Directory (and new node) mtimes, taken from SOURCE now that the mirror is caught up:
    // creating, renaming and deleting entries moved them on both sides at different times.
    //
    // Every path here names a node the mirror has at position_ (records that remove or move
    // one update the sets). SOURCE, though, may be ahead of the journal: a rename whose
    // record is not durable yet, or made a moment ago and not even appended (the fs appends
    // just after its syscall). A time read then may be another node's, so a path flushed
    // while the journal moved stays in attr_unsure_ and is flushed again at the next
    // catch-up during which the journal stands still. A path missing in SOURCE is kept for
    // 2 s (the record that moved it may still come and move the entry with it).
    const std::uint64_t before = journal_.last_seq();
    const bool still = before == position_;
    if (still) {
        for (auto& [path, since] : attr_unsure_) attr_dirty_.emplace(path, since);
        attr_unsure_.clear();
    }
    const auto now = Clock::now();
    std::map<std::string, Clock::time_point> missing;
    std::vector<std::string> sent;
    for (auto& [path, since] : attr_dirty_) {
        struct stat st;
        if (::fstatat(source_dirfd_, path.empty() ? "." : path.c_str(), &st,
                      AT_SYMLINK_NOFOLLOW | (path.empty() ? AT_EMPTY_PATH : 0)) != 0) {
            const auto first = since == Clock::time_point{} ? now : since;
            if (errno == ENOENT && now - first < std::chrono::seconds(2)) missing.emplace(path, first);
            continue;
        }
        if (auto r = mutate(proto::Setattr{0, path, proto::kAttrMtime, 0, 0, 0, 0, {}, ts(st.st_mtim)}); !r) return r;
        sent.push_back(path);
    }
    if (!still || journal_.last_seq() != before) {
        for (auto& p : sent) attr_unsure_.emplace(std::move(p), Clock::time_point{});
    }
    attr_dirty_ = std::move(missing);
    return {};
}

bool MirrorReplicator::attrs_to_flush() const {
    return !attr_dirty_.empty() || (!attr_unsure_.empty() && journal_.last_seq() == position_);
}

Result<void> MirrorReplicator::session(MirrorConnection& conn) {
    const std::uint64_t applied = conn.hello().applied_seq;
    last_sent_seq_ = std::max(last_sent_seq_, applied);
    // Where to resume: records below applied >> 24 are on the mirror; that record itself
    // too unless it is a Write (resent whole: WriteRange is idempotent).
    std::uint64_t start;
    {
        std::lock_guard lock(mu_);
        start = acked_;
    }
    const std::uint64_t applied_record = applied >> kSubSeqBits;
    if (applied_record > start) {
        start = applied_record - 1;
        Journal::Reader probe(journal_, applied_record - 1);
        DecodedRecord rec;
        auto got = probe.next(rec);
        // Writes and outside changes (Verify, outside Rename) are redone: both look at
        // SOURCE and the mirror again, so a repeat is harmless.
        const bool redo = got && *got &&
                          (rec.record.kind == fs::ChangeKind::Write || rec.record.kind == fs::ChangeKind::Verify ||
                           (rec.record.kind == fs::ChangeKind::Rename && (rec.record.flags & fs::kRenameFromOutside)));
        if (!redo) start = applied_record;
        start = std::min(start, journal_.last_seq());
    }
    {
        std::lock_guard lock(mu_);
        // Ranges taken by records the mirror did not get go back to the tracker.
        for (auto f = inflight_.rbegin(); f != inflight_.rend(); ++f) {  // latest first
            if (f->record <= start) continue;
            for (auto& t : f->taken) tracker_.restore_ranges(index_, t.key, t.ranges, f->record, t.through);
        }
        inflight_.clear();
        inflight_bytes_ = 0;
        acked_ = std::max(acked_, start);
        start = acked_;
        // No settle target until this session has caught up (a stale one would let
        // `wait` return while the replay is still running).
        settle_seq_ = ~0ull;
        settle_position_ = settled_;
    }
    position_ = start;
    set_state("replaying");
    Journal::Reader reader(journal_, position_);
    std::optional<DecodedRecord> lookahead;  // read while gathering Verify records, not yet sent
    std::optional<Error> deferred;           // a read error met while gathering
    bool first_reconcile_pass = true;
    int passes_in_a_row = 0;
    while (!stop_) {
        {
            std::lock_guard lock(mu_);
            if (reader_failed_) return fail("connection to " + options_.url + " lost");
        }
        const std::uint64_t ready = tracker_.ready_seq();
        if (position_ < ready) {
            DecodedRecord rec;
            Result<bool> got = true;
            if (lookahead) {
                rec = std::move(*lookahead);
                lookahead.reset();
            } else if (!deferred.has_value()) {
                got = reader.next(rec);
            } else {
                got = std::unexpected(*deferred);
                deferred.reset();
            }
            if (!got) {
                // Records this mirror never got were trimmed or are unreadable: only a full
                // reconcile can bring it back.
                set_error(got.error().message + "; reconciling the whole tree");
                {
                    std::lock_guard lock(mu_);
                    reconcile_wanted_ = true;
                    reconcile_checksum_ = true;
                    // Until that pass succeeded the saved cursor stays before the gap, so a
                    // remount (even after a clean stop) still reconciles with checksums.
                    cursor_hold_ = std::min(cursor_hold_, acked_);
                }
                position_ = journal_.last_seq();
                tracker_.skip(index_, position_);
                reader = Journal::Reader(journal_, position_);
                lookahead.reset();
                continue;
            }
            if (!*got) {
                journal_.wait_durable(position_ + 1, std::chrono::milliseconds(50));
                continue;
            }
            if (auto w = wait_window(); !w) return w;
            if (rec.record.kind == fs::ChangeKind::Verify) {
                // Consecutive outside changes are verified together (one round trip of listings).
                std::vector<DecodedRecord> group;
                group.push_back(std::move(rec));
                while (group.size() < kMaxVerifyBatch && group.back().seq < tracker_.ready_seq()) {
                    DecodedRecord more;
                    auto next = reader.next(more);
                    if (!next) {
                        deferred = next.error();
                        break;
                    }
                    if (!*next) break;
                    if (more.record.kind != fs::ChangeKind::Verify) {
                        lookahead = std::move(more);
                        break;
                    }
                    group.push_back(std::move(more));
                }
                if (auto s = send_verify(group); !s) return s;
                position_ = group.back().seq;
                continue;
            }
            position_ = rec.seq;
            if (auto s = send_record(rec); !s) return s;
            if (rec.seq % 4096 == 0) tracker_.prune(index_, position_);
            continue;
        }
        // Caught up with the journal.
        if (attrs_to_flush()) {
            if (auto r = flush_attrs(); !r) return r;
            tracker_.prune(index_, position_);
        }
        bool do_reconcile = false, checksum = false;
        {
            std::lock_guard lock(mu_);
            settle_seq_ = last_sent_seq_;
            settle_position_ = position_;
            if (cum_ack_ >= settle_seq_) settled_ = std::max(settled_, position_);
            if (reconcile_wanted_ && Clock::now() >= reconcile_not_before_) {
                do_reconcile = true;
                checksum = reconcile_checksum_;
                status_.state = "reconciling";  // with reconcile_wanted_ cleared: wait() must not slip through
                reconcile_wanted_ = false;
                op_errors_in_pass_ = 0;
            }
            status_.reconcile_pending = reconcile_wanted_ || do_reconcile;
        }
        if (do_reconcile) {
            const std::uint64_t journal_before = journal_.last_seq();
            const std::uint64_t sent_before = position_;  // records after it are replayed after the walk
            {
                // The ops of this walk are its own: a failure of theirs is never "raced".
                std::lock_guard lock(mu_);
                raced_ops_until_ = last_sent_seq_;
            }
            auto r = reconcile_tree(*this, source_dirfd_, options_.excludes, checksum, lists_xattrs());
            {
                std::lock_guard lock(mu_);
                raced_after_ = sent_before;
                raced_through_ = journal_.last_seq();
                raced_ops_after_ = last_sent_seq_;
                raced_ops_until_ = ~0ull;
            }
            if (!r) {
                std::lock_guard lock(mu_);
                reconcile_wanted_ = true;
                if (reader_failed_) return fail("connection to " + options_.url + " lost during reconcile");
            }
            if (!r) set_error("reconcile: " + r.error().message);
            // Wait for every op of the pass to be acknowledged, then judge it.
            {
                std::unique_lock lock(mu_);
                const std::uint64_t target = last_sent_seq_;
                cv_.wait(lock, [&] { return cum_ack_ >= target || reader_failed_ || stop_; });
                if (reader_failed_) return fail("connection to " + options_.url + " lost during reconcile");
                if (op_errors_in_pass_ > 0 || !r) {
                    reconcile_wanted_ = true;
                    ++reconcile_failures_;
                    auto delay = std::chrono::seconds(1 << std::min(reconcile_failures_, 6));
                    reconcile_not_before_ = Clock::now() + delay;
                } else {
                    reconcile_failures_ = 0;
                    reconcile_checksum_ = false;
                    if (checksum) cursor_hold_ = ~0ull;  // what the dropped records changed is on the mirror
                    // Changes that raced with the walk are replayed next; a second quick pass
                    // repairs what a replay over a newer tree could get wrong.
                    if (journal_.last_seq() != journal_before && passes_in_a_row < 2) {
                        reconcile_wanted_ = true;
                        ++passes_in_a_row;
                    } else {
                        passes_in_a_row = 0;
                    }
                }
            }
            (void)first_reconcile_pass;
            first_reconcile_pass = false;
            set_state("streaming");
            continue;
        }
        set_state("streaming");
        // -o sync: a durable barrier covering everything processed so far.
        {
            std::unique_lock lock(mu_);
            if (durable_wanted_ > durable_ && durable_barrier_id_ == 0) {
                durable_barrier_id_ = next_query_id_++;
                durable_barrier_position_ = position_;
                auto q = std::make_shared<Query>();
                q->id = durable_barrier_id_;
                queries_.push_back(q);
                lock.unlock();
                if (auto s = send(proto::Barrier{q->id, true}); !s) return s;
                continue;
            }
        }
        journal_.wait_durable(position_ + 1, std::chrono::milliseconds(50));
    }
    return {};
}

MirrorStatus MirrorReplicator::status() const {
    std::lock_guard lock(mu_);
    MirrorStatus s = status_;
    s.connected = connected_;
    s.acked_seq = acked_;
    s.journal_seq = journal_.last_seq();
    s.backlog_ops = s.journal_seq > acked_ ? s.journal_seq - acked_ : 0;
    s.backlog_bytes = tracker_.pending_bytes(index_) + inflight_bytes_;
    s.reconcile_pending = status_.reconcile_pending || reconcile_wanted_;
    if (conn_) s.bytes_sent += conn_->bytes_sent();
    auto& self = const_cast<MirrorReplicator&>(*this);
    if (s.backlog_ops == 0) {
        self.behind_ = false;
    } else if (!behind_) {
        self.behind_ = true;
        self.behind_since_ = Clock::now();
    }
    s.lag_ms = behind_ ? static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                        Clock::now() - behind_since_)
                                                        .count())
                       : 0;
    return s;
}

std::uint64_t MirrorReplicator::acked_seq() const {
    std::lock_guard lock(mu_);
    return std::min(acked_, cursor_hold_);
}

bool MirrorReplicator::wait_settled(std::uint64_t seq, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    for (;;) {
        if (settled_ >= seq && !reconcile_wanted_ && status_.state != "reconciling") return true;
        if (cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(50))) ==
                std::cv_status::timeout &&
            Clock::now() >= deadline) {
            return settled_ >= seq && !reconcile_wanted_ && status_.state != "reconciling";
        }
    }
}

int MirrorReplicator::wait_durable(std::uint64_t seq, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    durable_wanted_ = std::max(durable_wanted_, seq);
    while (durable_ < seq) {
        if (stop_) return EIO;
        if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && durable_ < seq) return ETIMEDOUT;
    }
    return 0;
}

void MirrorReplicator::request_resync(bool checksum) {
    std::lock_guard lock(mu_);
    reconcile_wanted_ = true;
    reconcile_checksum_ = reconcile_checksum_ || checksum;
    reconcile_not_before_ = {};
    status_.reconcile_pending = true;
}

void MirrorReplicator::on_disconnect() {}

}  // namespace sfs::repl
