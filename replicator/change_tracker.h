// ChangeTracker: the replicator's fs::ChangeSink.
//
// Design note
//  - on_change() runs on FUSE threads. Under one mutex it updates the live inode map, gives
//    the record its epoch (docs/journal.md), appends it to the journal (memory only: the
//    journal's flusher does the I/O) and, for a Write, adds the range to every mirror's dirty
//    set. Holding the mutex across the append makes the journal order equal the order of the
//    map updates, so the path stored in a Write record is the node's path at that position of
//    the journal. Namespace records arrive already serialised by the fs.
//  - Data is never copied: a Write adds [offset, offset+length) to an IntervalSet keyed by
//    (ino, epoch), per mirror. When a mirror's sender reaches a Write record it takes the
//    whole set (coalescing every later write to the same file that is already known) and
//    reads the bytes from SOURCE at the node's *current* path (source_path()).
//  - The live map (ino -> epoch, names) only has to know nodes with pending data; it is
//    garbage-collected when it doubles in size. Renames rewrite the names below the moved
//    path; a hardlinked node keeps all its known names.
// Lock order: ChangeTracker::mu_ before Journal::mu_.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fs/change_record.h"
#include "replicator/interval_set.h"
#include "replicator/journal.h"

namespace sfs::repl {

struct NodeKey {
    std::uint64_t ino = 0;
    std::uint64_t epoch = 0;
    auto operator<=>(const NodeKey&) const = default;
};

class ChangeTracker final : public fs::ChangeSink {
public:
    ChangeTracker(Journal& journal, std::size_t mirrors, std::chrono::milliseconds delay);

    void on_change(const fs::ChangeRecord& record) noexcept override;
    int wait_durable(std::uint64_t ino, const std::string& path) noexcept override;
    // Installed by the Replicator for -o sync: blocks until every mirror acked `seq` durably.
    void set_durable_waiter(std::function<int(std::uint64_t seq)> waiter) { durable_waiter_ = std::move(waiter); }

    // Sender side. For the Write record `seq` of `key` with range [offset, offset+length):
    // the ranges to send now, or empty when an earlier take already covered this record.
    std::vector<ByteRange> take_ranges(std::size_t mirror, NodeKey key, std::uint64_t seq, std::uint64_t offset,
                                       std::uint64_t length);
    // Puts ranges back (their transfer was not acknowledged before a disconnect): the Write
    // record `first_seq` took them, covering that node's records up to `last_seq`. Restore
    // the takes of one node latest first.
    void restore_ranges(std::size_t mirror, NodeKey key, const std::vector<ByteRange>& ranges, std::uint64_t first_seq,
                        std::uint64_t last_seq);
    // Seq of the last record covered by the latest take of `key` (for restore_ranges).
    std::uint64_t taken_through(std::size_t mirror, NodeKey key) const;
    // The node was deleted at the sender's position: its pending ranges are moot.
    void drop(std::size_t mirror, NodeKey key);
    // Forgets bookkeeping of takes the sender has moved past.
    void prune(std::size_t mirror, std::uint64_t position);
    // The sender skipped every record up to `through` (trimmed unsent: a full reconcile
    // sends what they changed): the ranges of those Write records are moot.
    void skip(std::size_t mirror, std::uint64_t through);
    // Current path of the node in SOURCE, if known and still that incarnation.
    std::optional<std::string> source_path(NodeKey key) const;
    // Whether the live map knows any incarnation of `ino` (if not, e.g. for records replayed
    // from a previous process, the record's own path is the best guess, checked by st_ino).
    bool knows(std::uint64_t ino) const;
    // Pending bytes of a mirror (for status).
    std::uint64_t pending_bytes(std::size_t mirror) const;
    // The highest seq appended at least `delay` ago (all seqs when delay is 0).
    std::uint64_t ready_seq() const;

private:
    struct Node {
        std::uint64_t epoch = 0;
        std::vector<std::string> names;
    };
    // Ranges of the Write records first_seq..last_seq of one node. A truncate of the node
    // closes the open segment: data written after a truncate must not be sent before the
    // truncate is replayed on the mirror (the replayed truncate would cut it off again).
    struct Segment {
        IntervalSet ranges;
        std::uint64_t first_seq = 0;
        std::uint64_t last_seq = 0;
    };
    struct Dirty {
        std::deque<Segment> segments;     // ascending seqs
        bool closed = false;              // the next Write opens a new segment
        std::uint64_t taken_through = 0;  // Write records <= this were sent by an earlier take
    };
    struct Mirror {
        std::map<NodeKey, Dirty> dirty;
    };

    void apply_namespace(const fs::ChangeRecord& r, std::uint64_t seq);  // mu_ held
    void rename_names(const std::string& from, const std::string& to, bool exchange);  // mu_ held
    void collect_garbage();  // mu_ held

    Journal& journal_;
    const std::chrono::milliseconds delay_;
    std::function<int(std::uint64_t)> durable_waiter_;

    mutable std::mutex mu_;
    std::unordered_map<std::uint64_t, Node> nodes_;
    std::size_t gc_threshold_ = 4096;
    std::vector<Mirror> mirrors_;
    mutable std::deque<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> times_;  // delay > 0 only
};

}  // namespace sfs::repl
