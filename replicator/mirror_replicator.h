// MirrorReplicator: one mirror's sender. Reads the journal from that mirror's cursor and
// streams it to syncfsd over one connection, pipelined, acknowledged by seq.
//
// Design note (docs/replication.md has the operator's view)
//  - Threads: one run thread per mirror (connect, reconcile, send); per connection one
//    reader thread (acks, query replies). FUSE threads never touch this class except
//    through status/wait calls from the control socket or -o sync.
//  - Protocol seqs: a mutation made for journal record J gets seq >= J << 24, each strictly
//    greater than the last one sent on this stream, so the server's "highest applied seq"
//    (HelloReply::applied_seq) tells exactly which journal records reached the mirror:
//    every record < applied >> 24 did, and record applied >> 24 did unless it was a Write,
//    which is resent whole (WriteRange is idempotent). Ops that are not journal records
//    (directory mtimes after catching up, reconcile) take seqs at the current position.
//  - In flight: a deque of (record, last seq used, ranges taken). A cumulative Ack pops
//    records; the mirror's acked seq is what the cursor file stores and what trimming and
//    `syncfsctl wait` use. On a disconnect the taken ranges go back to the tracker.
//  - Outside changes arrive as journal records too (docs/watcher.md): a run of Verify records
//    is verified as one batch by reconcile_paths() (listings pipelined), each record's ops in
//    its own seq space (set_record); an outside Rename is sent as a rename only when the
//    mirror's state allows it, then both names are verified. Both are redone after a reconnect.
//  - Failed ops (an Ack with an errno: ENOSPC, EACCES, ...) are recorded for status and
//    schedule a reconcile of the whole tree with backoff: that is what brings the mirror back
//    to SOURCE after the cause is fixed.
// Lock order: MirrorReplicator::mu_ before ChangeTracker::mu_ before Journal::mu_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "protocol/native/messages.h"
#include "replicator/change_tracker.h"
#include "replicator/journal.h"
#include "replicator/mirror_connection.h"

namespace sfs::repl {

struct VerifyItem;  // reconcile.h

inline constexpr int kSubSeqBits = 24;

struct MirrorOptions {
    std::string url;
    std::string secrets_file;
    std::string state_dir;
    std::string stream_id;
    std::vector<std::string> excludes;
    std::chrono::milliseconds backoff_min{100};
    std::chrono::milliseconds backoff_max{10000};
    std::size_t max_inflight_records = 16384;
    std::uint64_t max_inflight_bytes = 32ull << 20;
};

struct MirrorStatus {
    std::string url;
    bool connected = false;
    std::string state;                 // "connecting", "replaying", "reconciling", "streaming", "stopped"
    std::uint64_t acked_seq = 0;       // journal records <= this are applied on the mirror
    std::uint64_t journal_seq = 0;     // last record journaled
    std::uint64_t backlog_ops = 0;     // journal_seq - acked_seq
    std::uint64_t backlog_bytes = 0;   // data bytes pending for this mirror
    std::uint64_t lag_ms = 0;          // how long the mirror has been behind (0: caught up)
    std::int64_t last_ack_unix_ms = 0;
    std::string last_error;
    std::int64_t last_error_unix_ms = 0;
    std::uint64_t errors = 0;          // failed ops and connection failures since start
    std::uint64_t bytes_sent = 0;      // over all connections
    std::uint64_t reconnects = 0;
    bool reconcile_pending = false;
    std::string reconcile_progress;    // last progress line of the running/last reconcile
    std::uint64_t outside_verified = 0;  // outside changes verified (Verify records, docs/watcher.md)
    std::uint64_t outside_changed = 0;   // ... of which changed something on the mirror
    std::uint64_t outside_renames = 0;   // outside renames sent as renames
};

class MirrorReplicator;

// What reconcile needs from a mirror's sender (implemented by MirrorReplicator).
class MirrorChannel {
public:
    virtual ~MirrorChannel() = default;
    // Sends a mutation after giving it the next seq (for content: the same seq for the
    // Begin, all Chunks and the Commit: use next_seq() and send() directly).
    virtual Result<void> mutate(protocol::native::Message message) = 0;
    virtual std::uint64_t next_seq() = 0;
    virtual Result<void> send(const protocol::native::Message& message) = 0;
    // The mirror's listing; `incomplete` is set (non-empty) when the mirror could not read all of it.
    virtual Result<std::vector<protocol::native::ListEntry>> list(const std::string& path, std::uint32_t flags,
                                                                  std::string& incomplete) = 0;
    virtual Result<std::vector<std::uint8_t>> signature(const std::string& path) = 0;
    // Pipelined listings: one ListRequest per (path, flags), all sent before the first reply
    // is awaited (one round trip for the lot). Outer error: the connection is gone. Inner:
    // that path's error (ENOENT/ENOTDIR: the mirror lacks it; EIO: listing incomplete).
    virtual Result<std::vector<Result<std::vector<protocol::native::ListEntry>>>> list_many(
        const std::vector<std::pair<std::string, std::uint32_t>>& requests) = 0;
    // The journal record the following mutations belong to (their protocol seqs are taken
    // from its seq space), for work that covers several records (docs/watcher.md).
    virtual void set_record(std::uint64_t /*journal_seq*/) {}
    virtual bool stopping() const = 0;
    virtual void progress(const std::string& line) = 0;
};

class MirrorReplicator final : private MirrorChannel {
public:
    MirrorReplicator(std::size_t index, MirrorOptions options, Journal& journal, ChangeTracker& tracker,
                     int source_dirfd, MirrorConnector connector, std::uint64_t cursor);
    ~MirrorReplicator();

    // Starts the run thread. reconcile: reconcile the whole tree after the backlog;
    // checksum: compare file checksums too (after an unclean stop).
    void start(bool reconcile, bool checksum);
    void stop();  // joins; unacked records stay in the journal

    MirrorStatus status() const;
    // The cursor to save: the highest record acknowledged, held before a gap of trimmed
    // records until a checksum pass made up for it.
    std::uint64_t acked_seq() const;
    // Everything journaled up to `seq` is on the mirror, directory times included, and no
    // reconcile is pending. Returns false on timeout.
    bool wait_settled(std::uint64_t seq, std::chrono::steady_clock::time_point deadline);
    // -o sync: returns when the mirror acknowledged records <= seq as durable (0), or an errno.
    int wait_durable(std::uint64_t seq, std::chrono::steady_clock::time_point deadline);
    void request_resync(bool checksum);
    const std::string& url() const noexcept { return options_.url; }

private:
    struct InFlight {
        std::uint64_t record = 0;   // journal seq
        std::uint64_t last_seq = 0; // highest protocol seq sent for it (0: nothing sent)
        struct Taken {
            NodeKey key;
            std::vector<ByteRange> ranges;
            std::uint64_t through = 0;  // last record of the node this take covered
        };
        std::vector<Taken> taken;
        std::uint64_t bytes = 0;
    };
    struct Query {
        std::uint64_t id = 0;
        std::vector<protocol::native::ListEntry> entries;
        std::vector<std::uint8_t> data;
        protocol::native::Done done;
        bool finished = false;
    };

    void run();
    Result<void> session(MirrorConnection& conn);
    void reader_loop(MirrorConnection& conn);
    Result<void> send_record(const DecodedRecord& rec);
    // Outside changes (docs/watcher.md): a batch of consecutive Verify records, and a Rename
    // the watcher saw (the mirror may lack its source).
    Result<void> send_verify(const std::vector<DecodedRecord>& group);
    Result<void> send_outside_rename(const DecodedRecord& rec);
    void complete_records_below(std::uint64_t record);  // mu_ held
    Result<void> send_write(const DecodedRecord& rec, InFlight& flight);
    Result<void> flush_attrs();
    bool attrs_to_flush() const;
    Result<void> send_node_time(const fs::ChangeRecord& r);
    void mark_attr_dirty(const std::string& path, bool node_itself);
    void attr_dirty_moved(const std::string& from, const std::string& to, bool exchange);
    void attr_dirty_removed(const std::string& path);
    Result<void> wait_window();
    void on_disconnect();
    void set_error(const std::string& message);
    void set_state(const char* state);
    std::uint64_t now_unix_ms() const;

    // MirrorChannel
    Result<void> mutate(protocol::native::Message message) override;
    // Whether the connected mirror's listings can carry xattr summaries (native protocol 2).
    // Session thread only (conn_ is stable for the whole session).
    bool lists_xattrs() const;
    std::uint64_t next_seq() override;
    Result<void> send(const protocol::native::Message& message) override;
    Result<std::vector<protocol::native::ListEntry>> list(const std::string& path, std::uint32_t flags,
                                                          std::string& incomplete) override;
    Result<std::vector<std::uint8_t>> signature(const std::string& path) override;
    Result<std::vector<Result<std::vector<protocol::native::ListEntry>>>> list_many(
        const std::vector<std::pair<std::string, std::uint32_t>>& requests) override;
    void set_record(std::uint64_t journal_seq) override;
    bool stopping() const override { return stop_.load(); }
    void progress(const std::string& line) override;
    std::shared_ptr<Query> start_query();
    Result<std::shared_ptr<Query>> finish_query(std::shared_ptr<Query> q);

    const std::size_t index_;
    const MirrorOptions options_;
    Journal& journal_;
    ChangeTracker& tracker_;
    const int source_dirfd_;
    const MirrorConnector connector_;

    std::thread thread_;
    std::atomic<bool> stop_{false};

    // Run-thread state (no lock: only the run thread uses it).
    MirrorConnection* conn_ = nullptr;
    std::uint64_t position_ = 0;   // last journal record processed (sent or skipped)
    std::uint64_t last_sent_seq_ = 0;  // highest protocol seq used on this stream
    // Paths whose mtime is to be set from SOURCE once caught up; the value is when the path
    // was first found missing in SOURCE (time_point{}: not missing). attr_unsure_: paths
    // whose time was read while SOURCE was ahead of the journal (flush_attrs()).
    std::map<std::string, std::chrono::steady_clock::time_point> attr_dirty_;
    std::map<std::string, std::chrono::steady_clock::time_point> attr_unsure_;
    // Paths whose Write records were sent with SOURCE's size and mtime at send time, since
    // a Verify last looked at them: an outside change made before that send may hide behind
    // the stamp, so their verification compares content (reconcile_paths). Bounded: past
    // kMaxStamped every verified file is compared until a whole-tree Verify.
    std::set<std::string> stamped_;
    bool stamped_all_ = false;
    static constexpr std::size_t kMaxStamped = 65536;
    void note_stamped(const std::string& path);
    bool is_stamped(const std::string& path) const;
    void verified(const std::vector<VerifyItem>& items);
    std::uint64_t next_query_id_ = 1;
    std::uint64_t barrier_sent_position_ = 0;

    mutable std::mutex mu_;
    std::condition_variable cv_;  // acks, query replies, disconnects, stop
    std::deque<InFlight> inflight_;
    std::uint64_t inflight_bytes_ = 0;
    std::uint64_t acked_ = 0;        // journal seq acked
    std::uint64_t cum_ack_ = 0;      // protocol seq cumulatively acked
    std::uint64_t settled_ = 0;      // journal seq settled (see wait_settled)
    std::uint64_t settle_seq_ = 0, settle_position_ = 0;  // pending settle target
    std::uint64_t durable_ = 0;      // journal seq durable on the mirror
    std::uint64_t durable_wanted_ = 0;
    std::uint64_t durable_barrier_id_ = 0, durable_barrier_position_ = 0;
    bool connected_ = false;
    // mu_ held: op `op_seq` failed with `err` only because its record raced with the last
    // reconcile walk (see raced_after_).
    bool raced_with_reconcile(std::uint64_t op_seq, int err) const;
    bool reader_failed_ = false;
    int reader_error_code_ = 0;  // errno of the reader's failure (ECONNRESET: closed by the peer)
    bool closing_ = false;        // run() is shutting the connection down: the reader's error is ours
    bool reconcile_wanted_ = false;
    bool reconcile_checksum_ = false;
    std::chrono::steady_clock::time_point reconcile_not_before_{};
    int reconcile_failures_ = 0;
    std::uint64_t op_errors_in_pass_ = 0;
    // Journal records not yet sent when the last reconcile began walking SOURCE, up to the
    // last one made before it ended: (raced_after_, raced_through_]. Replayed after the
    // pass over a mirror that already has the newer tree, their namespace ops may fail
    // harmlessly (EEXIST, ENOENT...); the quick pass that follows repairs.
    std::uint64_t raced_after_ = 0, raced_through_ = 0;
    // ...and only ops sent after that walk's own ops, before the next walk began.
    std::uint64_t raced_ops_after_ = 0, raced_ops_until_ = 0;
    // After records this mirror still needed were trimmed (journal_max, disk full): the
    // cursor reported for saving stays at most here until a checksum pass succeeded.
    std::uint64_t cursor_hold_ = ~0ull;
    std::deque<std::shared_ptr<Query>> queries_;
    MirrorStatus status_;
    std::chrono::steady_clock::time_point behind_since_{};
    bool behind_ = false;
    std::uint64_t bytes_sent_before_ = 0;
};

}  // namespace sfs::repl
