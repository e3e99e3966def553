#include "replicator/change_tracker.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace sfs::repl {
namespace {

bool is_below(const std::string& name, const std::string& dir) {
    return name.size() > dir.size() && name.compare(0, dir.size(), dir) == 0 && name[dir.size()] == '/';
}

bool creates_node(fs::ChangeKind k) {
    return k == fs::ChangeKind::Create || k == fs::ChangeKind::Mknod || k == fs::ChangeKind::Mkdir ||
           k == fs::ChangeKind::Symlink;
}

}  // namespace

ChangeTracker::ChangeTracker(Journal& journal, std::size_t mirrors, std::chrono::milliseconds delay)
    : journal_(journal), delay_(delay), mirrors_(mirrors) {}

void ChangeTracker::on_change(const fs::ChangeRecord& record) noexcept {
    try {
        std::lock_guard lock(mu_);
        if (record.kind == fs::ChangeKind::Write) {
            if (record.length == 0) return;
            auto it = nodes_.find(record.ino);
            if (it == nodes_.end()) {
                it = nodes_.emplace(record.ino, Node{0, {record.path}}).first;
            } else if (it->second.names.empty()) {
                // Every name the map knew was removed, yet the node is written: it has a name
                // the map never saw (a link made before the node was tracked). Without one
                // the sender could not open it and the data would never be sent.
                it->second.names.push_back(record.path);
            }
            const NodeKey key{record.ino, it->second.epoch};
            std::uint64_t seq;
            if (!it->second.names.empty() && it->second.names.front() != record.path) {
                fs::ChangeRecord copy = record;
                copy.path = it->second.names.front();  // authoritative: renames seen in order
                seq = journal_.append(copy, key.epoch);
            } else {
                seq = journal_.append(record, key.epoch);
            }
            for (auto& m : mirrors_) {
                Dirty& d = m.dirty[key];
                if (d.segments.empty() || d.closed) {
                    d.segments.push_back(Segment{{}, seq, seq});
                    d.closed = false;
                }
                d.segments.back().ranges.add(record.offset, record.length);
                d.segments.back().last_seq = seq;
            }
            if (delay_.count() > 0) times_.emplace_back(seq, std::chrono::steady_clock::now());
        } else {
            std::uint64_t epoch = 0;
            const std::uint64_t seq_next = journal_.last_seq() + 1;  // under mu_: no other appender
            if (creates_node(record.kind)) {
                epoch = seq_next;
            } else if (auto it = nodes_.find(record.ino); it != nodes_.end()) {
                epoch = it->second.epoch;
            }
            const std::uint64_t seq = journal_.append(record, epoch);
            apply_namespace(record, seq);
            // A truncate or a time change of the node splits its writes: the ones after it are
            // sent by their own record, after it. Otherwise the earlier record's transfer
            // (and the mtime it sets) would come before the replayed op, which then cuts
            // their data off or sets an older time that no later record corrects.
            if (record.kind == fs::ChangeKind::Setattr && (record.attr_mask & (fs::kAttrSize | fs::kAttrMtime))) {
                for (auto& m : mirrors_) {
                    auto d = m.dirty.find(NodeKey{record.ino, epoch});
                    if (d != m.dirty.end()) d->second.closed = true;
                }
            }
            if (delay_.count() > 0) times_.emplace_back(seq, std::chrono::steady_clock::now());
        }
        if (nodes_.size() > gc_threshold_) collect_garbage();
    } catch (const std::exception& e) {
        // Only allocation can throw here; losing track of one record is recovered by the
        // next reconcile, which the log line asks for.
        spdlog::error("replicator: cannot record change of '{}': {} (run syncfsctl resync)", record.path, e.what());
    }
}

void ChangeTracker::apply_namespace(const fs::ChangeRecord& r, std::uint64_t seq) {
    using K = fs::ChangeKind;
    switch (r.kind) {
        case K::Create:
        case K::Mknod:
        case K::Mkdir:
        case K::Symlink:
            // A new incarnation. A previous node with this number is gone (it was deleted).
            nodes_[r.ino] = Node{seq, {r.path}};
            break;
        case K::Link: {
            auto it = nodes_.find(r.ino);
            if (it != nodes_.end()) it->second.names.push_back(r.path);
            break;
        }
        case K::Rename:
            rename_names(r.path, r.path2, (r.flags & RENAME_EXCHANGE) != 0);
            break;
        case K::Unlink:
        case K::Rmdir: {
            auto it = nodes_.find(r.ino);
            if (it != nodes_.end()) {
                auto& names = it->second.names;
                names.erase(std::remove(names.begin(), names.end(), r.path), names.end());
                if (r.kind == K::Rmdir || r.nlink == 0) nodes_.erase(it);
            }
            break;
        }
        default:
            break;
    }
}

void ChangeTracker::rename_names(const std::string& from, const std::string& to, bool exchange) {
    auto rewrite = [](std::string& name, const std::string& a, const std::string& b) {
        if (name == a) {
            name = b;
            return true;
        }
        if (is_below(name, a)) {
            name = b + name.substr(a.size());
            return true;
        }
        return false;
    };
    for (auto& [ino, node] : nodes_) {
        for (auto it = node.names.begin(); it != node.names.end();) {
            if (rewrite(*it, from, to)) {
                ++it;
            } else if (exchange && rewrite(*it, to, from)) {
                ++it;
            } else if (!exchange && (*it == to || is_below(*it, to))) {
                it = node.names.erase(it);  // replaced by the rename
            } else {
                ++it;
            }
        }
    }
}

void ChangeTracker::collect_garbage() {
    // Keep nodes some mirror still has data for; the rest can be learned again from the
    // next record that names them.
    for (auto it = nodes_.begin(); it != nodes_.end();) {
        bool needed = false;
        for (const auto& m : mirrors_) {
            auto d = m.dirty.lower_bound(NodeKey{it->first, 0});
            if (d != m.dirty.end() && d->first.ino == it->first) needed = true;
        }
        it = needed ? std::next(it) : nodes_.erase(it);
    }
    gc_threshold_ = std::max<std::size_t>(4096, nodes_.size() * 2);
}

int ChangeTracker::wait_durable(std::uint64_t, const std::string&) noexcept {
    if (!durable_waiter_) return 0;
    return durable_waiter_(journal_.last_seq());
}

std::vector<ByteRange> ChangeTracker::take_ranges(std::size_t mirror, NodeKey key, std::uint64_t seq,
                                                  std::uint64_t offset, std::uint64_t length) {
    std::lock_guard lock(mu_);
    Dirty& d = mirrors_[mirror].dirty[key];
    if (seq <= d.taken_through) return {};
    // Segments that end before this record were restored for records the sender has passed
    // (they were applied after all): fold them in, resending is harmless.
    IntervalSet out;
    while (!d.segments.empty() && d.segments.front().last_seq < seq) {
        out.add(d.segments.front().ranges.ranges());
        d.segments.pop_front();
    }
    if (!d.segments.empty() && d.segments.front().first_seq <= seq) {
        out.add(d.segments.front().ranges.ranges());
        d.taken_through = d.segments.front().last_seq;
        d.segments.pop_front();
        if (d.segments.empty()) d.closed = false;
    } else {
        out.add(offset, length);  // a record from before this process: only its own range
        d.taken_through = seq;
    }
    return out.take();
}

std::uint64_t ChangeTracker::taken_through(std::size_t mirror, NodeKey key) const {
    std::lock_guard lock(mu_);
    auto& dirty = mirrors_[mirror].dirty;
    auto it = dirty.find(key);
    return it == dirty.end() ? 0 : it->second.taken_through;
}

void ChangeTracker::restore_ranges(std::size_t mirror, NodeKey key, const std::vector<ByteRange>& ranges,
                                   std::uint64_t first_seq, std::uint64_t last_seq) {
    std::lock_guard lock(mu_);
    Dirty& d = mirrors_[mirror].dirty[key];
    Segment seg{{}, first_seq, std::max(first_seq, last_seq)};
    seg.ranges.add(ranges);
    d.segments.push_front(std::move(seg));
    d.taken_through = std::min(d.taken_through, first_seq - 1);
}

void ChangeTracker::drop(std::size_t mirror, NodeKey key) {
    std::lock_guard lock(mu_);
    auto& dirty = mirrors_[mirror].dirty;
    auto it = dirty.find(key);
    if (it == dirty.end()) return;
    it->second.segments.clear();
    it->second.closed = false;
}

void ChangeTracker::prune(std::size_t mirror, std::uint64_t position) {
    std::lock_guard lock(mu_);
    auto& dirty = mirrors_[mirror].dirty;
    for (auto it = dirty.begin(); it != dirty.end();) {
        const Dirty& d = it->second;
        const bool done = d.segments.empty() && d.taken_through <= position;
        it = done ? dirty.erase(it) : std::next(it);
    }
}

void ChangeTracker::skip(std::size_t mirror, std::uint64_t through) {
    std::lock_guard lock(mu_);
    auto& dirty = mirrors_[mirror].dirty;
    for (auto it = dirty.begin(); it != dirty.end();) {
        Dirty& d = it->second;
        while (!d.segments.empty() && d.segments.front().last_seq <= through) d.segments.pop_front();
        it = d.segments.empty() ? dirty.erase(it) : std::next(it);
    }
}

std::optional<std::string> ChangeTracker::source_path(NodeKey key) const {
    std::lock_guard lock(mu_);
    auto it = nodes_.find(key.ino);
    if (it == nodes_.end() || it->second.epoch != key.epoch || it->second.names.empty()) return std::nullopt;
    return it->second.names.front();
}

bool ChangeTracker::knows(std::uint64_t ino) const {
    std::lock_guard lock(mu_);
    return nodes_.count(ino) != 0;
}

std::uint64_t ChangeTracker::pending_bytes(std::size_t mirror) const {
    std::lock_guard lock(mu_);
    std::uint64_t total = 0;
    for (const auto& [key, d] : mirrors_[mirror].dirty) {
        for (const auto& seg : d.segments) total += seg.ranges.bytes();
    }
    return total;
}

std::uint64_t ChangeTracker::ready_seq() const {
    if (delay_.count() == 0) return journal_.durable_seq();
    std::lock_guard lock(mu_);
    const auto cutoff = std::chrono::steady_clock::now() - delay_;
    while (!times_.empty() && times_.front().second <= cutoff) times_.pop_front();
    if (times_.empty()) return journal_.durable_seq();
    // Everything before the oldest record still inside the window is ready.
    return std::min(journal_.durable_seq(), times_.front().first - 1);
}

}  // namespace sfs::repl
