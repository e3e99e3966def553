// The replication journal: a durable, group-committed log of change records in state=DIR.
//
// Design note (format and rules: docs/journal.md):
//  - append() runs on FUSE threads: it encodes into an in-memory buffer under a mutex and
//    returns the record's seq. It never touches the disk (it blocks only when the buffer is
//    over its bound, i.e. the disk cannot keep up).
//  - One flusher thread writes each batch and fdatasyncs it, then publishes durable_seq.
//  - Readers (one per mirror sender) read only durable records, straight from the segment
//    files (the page cache makes that cheap), so a mirror never gets ahead of the journal and
//    a large backlog costs disk, not memory.
//  - open() replays: it validates every segment, truncates a torn tail of the last segment,
//    and fails with file+offset on corruption anywhere else.
// Lock order: Journal::mu_ is a leaf (no other lock is taken while holding it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "fs/change_record.h"
#include "replicator/journal_format.h"

namespace sfs::repl {

struct JournalOptions {
    std::uint64_t segment_bytes = 64ull << 20;  // rotate the active segment past this size
    std::size_t max_buffer_bytes = 64u << 20;   // append() blocks while the buffer is larger
    // When the journal is empty (new, or reset after corruption) the first record gets
    // max(1, min_next_seq): seqs never go backwards for a mirror that already acked some.
    std::uint64_t min_next_seq = 1;
    // false: the caller starts the flusher with start_flusher() (syncfs daemonizes with
    // fork() between opening the journal and serving; threads do not survive a fork).
    bool start_flusher = true;
};

struct ReplayStats {
    std::uint64_t records = 0;     // valid records found
    std::uint64_t torn_bytes = 0;  // bytes cut off the tail of the last segment
};

class Journal {
public:
    // Opens or creates the journal in `dir` (which must exist) and starts the flusher.
    static Result<std::unique_ptr<Journal>> open(const std::string& dir, JournalOptions options = {});
    // Deletes every segment in `dir` (after corruption). The next open() starts empty.
    static Result<void> discard(const std::string& dir);

    ~Journal();  // flushes what was appended, stops the flusher
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    void start_flusher();  // idempotent

    // Appends a record; returns its seq. Thread-safe, no I/O.
    std::uint64_t append(const fs::ChangeRecord& record, std::uint64_t epoch = 0) noexcept;

    std::uint64_t last_seq() const noexcept;     // highest seq appended (0: none)
    std::uint64_t durable_seq() const noexcept;  // highest seq on disk
    std::uint64_t first_seq() const noexcept;    // lowest seq still stored
    const ReplayStats& replay_stats() const noexcept { return replay_; }
    std::string last_error() const;              // last I/O error of the flusher, "" if none
    // The flusher's last attempt failed for want of space (ENOSPC, EDQUOT): records wait in
    // memory, and mutating FUSE ops will wait once the buffer is full, until space is freed.
    bool out_of_space() const noexcept { return out_of_space_.load(); }
    std::uint64_t stored_bytes() const noexcept;  // bytes in all segments

    // Blocks until durable_seq() >= seq or the timeout passes. Returns whether it is durable.
    bool wait_durable(std::uint64_t seq, std::chrono::milliseconds timeout) const;

    // Deletes every segment whose records all have seq <= acked (never the active one).
    void trim(std::uint64_t acked) noexcept;
    // Deletes the oldest segments (never the active one) while the journal holds more than
    // `max_bytes`, acknowledged or not. Returns the highest seq deleted (0: none).
    std::uint64_t trim_to_size(std::uint64_t max_bytes) noexcept;

    // Sequential reader of durable records with seq > `after`.
    class Reader {
    public:
        Reader(const Journal& journal, std::uint64_t after) : journal_(&journal), next_(after + 1) {}
        // Next durable record: true with `out` filled, false when none is durable yet, or an
        // error (records already trimmed, I/O error, corruption).
        Result<bool> next(DecodedRecord& out);
        std::uint64_t next_seq() const noexcept { return next_; }

    private:
        const Journal* journal_;
        std::uint64_t next_;
        std::uint64_t seg_first_ = 0;  // first seq of the open segment (0: none open)
        UniqueFd fd_;
        std::uint64_t offset_ = 0;      // file offset of buf_[0]
        std::string buf_;
        std::size_t pos_ = 0;
    };

private:
    struct Segment {
        std::uint64_t first_seq;
        std::string path;
        std::uint64_t durable_end;  // bytes of this file that are complete and synced
    };

    Journal(std::string dir, JournalOptions options) : dir_(std::move(dir)), options_(options) {}
    Result<void> replay();
    void flusher_loop();
    // Writes records first..last (`chunk`) at the end of the active segment and makes them
    // durable, retrying until it works; false only when stopping while it cannot.
    bool write_chunk(std::string_view chunk, std::uint64_t first, std::uint64_t last);
    Result<void> open_segment(std::uint64_t first_seq);  // creates + fsyncs the directory
    std::string segment_path(std::uint64_t first_seq) const;
    // Durable end of the segment starting at first_seq and the first seq of the next
    // segment (0 if this is the last one). false if no such segment is stored.
    bool segment_info(std::uint64_t first_seq, std::uint64_t& end, std::uint64_t& next_first, std::string& path) const;
    std::uint64_t segment_for(std::uint64_t seq) const;  // first seq of the segment holding seq

    const std::string dir_;
    const JournalOptions options_;
    ReplayStats replay_;

    mutable std::mutex mu_;
    mutable std::condition_variable durable_cv_;  // durable_seq_ moved
    std::condition_variable work_cv_;             // buffer got data or stop
    std::condition_variable space_cv_;            // buffer drained
    std::string buffer_;
    std::uint64_t buffer_first_seq_ = 0;
    struct Cut {
        std::size_t end;        // offset in the buffer just after record last_seq
        std::uint64_t last_seq;
    };
    std::vector<Cut> cuts_;     // record boundaries about every kChunkBytes of buffer_
    std::size_t last_cut_ = 0;
    std::uint64_t next_seq_ = 1;
    std::uint64_t durable_seq_ = 0;
    std::vector<Segment> segments_;  // sorted by first_seq; back() is active
    std::string last_error_;
    bool stop_ = false;
    std::atomic<bool> out_of_space_{false};

    UniqueFd active_fd_;          // only the flusher writes through it after open()
    std::uint64_t active_size_ = 0;
    std::thread flusher_;
};

}  // namespace sfs::repl
