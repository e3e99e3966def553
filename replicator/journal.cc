#include "replicator/journal.h"

#include "replicator/background_priority.h"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

namespace sfs::repl {
namespace {

constexpr char kPrefix[] = "journal-";
constexpr char kSuffix[] = ".log";
// Group-commit window (docs/journal.md): in a burst the flusher lets appends collect this
// long before it writes, unless the buffer is this big already.
constexpr auto kCommitWindow = std::chrono::microseconds(1000);
constexpr std::size_t kCommitWindowBytes = 256u << 10;
// A batch is written and made durable in chunks of about this size, cut at record
// boundaries as records are appended: a backlog that piled up while the disk was full
// must not be one write larger than the space freed for it.
constexpr std::size_t kChunkBytes = 256u << 10;

std::string errstr(int e) { return std::strerror(e); }

// Segment first seqs found in `dir`, sorted.
Result<std::vector<std::uint64_t>> list_segments(const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return fail(dir + ": cannot open journal directory: " + errstr(errno), errno);
    std::vector<std::uint64_t> seqs;
    while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() != sizeof(kPrefix) - 1 + 20 + sizeof(kSuffix) - 1) continue;
        if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) continue;
        std::string digits = name.substr(sizeof(kPrefix) - 1, 20);
        if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
        seqs.push_back(std::stoull(digits));
    }
    ::closedir(d);
    std::sort(seqs.begin(), seqs.end());
    return seqs;
}

Result<std::string> read_whole(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(path + ": " + errstr(errno), errno);
    std::string data;
    char chunk[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(path + ": read: " + errstr(errno), errno);
        }
        if (n == 0) break;
        data.append(chunk, static_cast<std::size_t>(n));
    }
    return data;
}

void fsync_dir(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd) ::fsync(fd.get());
}

}  // namespace

std::string Journal::segment_path(std::uint64_t first_seq) const {
    char name[64];
    std::snprintf(name, sizeof name, "%s%020" PRIu64 "%s", kPrefix, first_seq, kSuffix);
    return dir_ + "/" + name;
}

Result<void> Journal::discard(const std::string& dir) {
    auto seqs = list_segments(dir);
    if (!seqs) return std::unexpected(seqs.error());
    char name[64];
    for (auto s : *seqs) {
        std::snprintf(name, sizeof name, "%s%020" PRIu64 "%s", kPrefix, s, kSuffix);
        std::string path = dir + "/" + name;
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail(path + ": unlink: " + errstr(errno), errno);
    }
    fsync_dir(dir);
    return {};
}

Result<std::unique_ptr<Journal>> Journal::open(const std::string& dir, JournalOptions options) {
    std::unique_ptr<Journal> j(new Journal(dir, options));
    if (auto r = j->replay(); !r) return std::unexpected(r.error());
    if (options.start_flusher) j->start_flusher();
    return j;
}

void Journal::start_flusher() {
    if (!flusher_.joinable()) flusher_ = std::thread([this] {
        lower_this_thread_priority();
        flusher_loop();
    });
}

Result<void> Journal::replay() {
    auto seqs = list_segments(dir_);
    if (!seqs) return std::unexpected(seqs.error());
    std::uint64_t expect = 0;  // next seq expected (0: anything, first segment)
    for (std::size_t i = 0; i < seqs->size(); ++i) {
        const std::uint64_t first = (*seqs)[i];
        const bool last = i + 1 == seqs->size();
        const std::string path = segment_path(first);
        if (expect != 0 && first != expect) {
            return fail(path + ": journal gap: segment starts at seq " + std::to_string(first) + ", expected " +
                        std::to_string(expect));
        }
        auto data = read_whole(path);
        if (!data) return std::unexpected(data.error());
        std::size_t off = 0;
        std::uint64_t want = first;
        while (off < data->size()) {
            DecodedRecord rec;
            DecodeStatus st = decode_record(std::span<const char>(data->data() + off, data->size() - off), rec);
            std::string problem;
            if (st != DecodeStatus::Ok) {
                problem = to_string(st);
            } else if (rec.seq != want) {
                problem = "seq " + std::to_string(rec.seq) + " where " + std::to_string(want) + " was expected";
            }
            if (problem.empty()) {
                off += rec.size;
                ++want;
                ++replay_.records;
                continue;
            }
            if (!last) {
                return fail(path + ": corrupt journal record at offset " + std::to_string(off) + ": " + problem);
            }
            // Torn tail: the batch being written when the process died. Cut it off.
            replay_.torn_bytes = data->size() - off;
            spdlog::warn("{}: torn tail at offset {} ({}): dropping {} bytes never reported durable", path, off, problem,
                         replay_.torn_bytes);
            UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
            if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(off)) != 0 || ::fdatasync(fd.get()) != 0) {
                return fail(path + ": cannot truncate torn tail: " + errstr(errno), errno);
            }
            data->resize(off);
            break;
        }
        segments_.push_back(Segment{first, path, data->size()});
        expect = want;
    }
    if (segments_.empty()) {
        next_seq_ = std::max<std::uint64_t>(1, options_.min_next_seq);
        if (auto r = open_segment(next_seq_); !r) return r;
    } else {
        next_seq_ = expect;
        const Segment& s = segments_.back();
        active_fd_ = UniqueFd(::open(s.path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        if (!active_fd_) return fail(s.path + ": cannot open for append: " + errstr(errno), errno);
        active_size_ = s.durable_end;
    }
    durable_seq_ = next_seq_ - 1;
    return {};
}

Result<void> Journal::open_segment(std::uint64_t first_seq) {
    std::string path = segment_path(first_seq);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!fd) return fail(path + ": cannot create journal segment: " + errstr(errno), errno);
    fsync_dir(dir_);  // the segment's name is durable before any record in it
    active_fd_ = std::move(fd);
    active_size_ = 0;
    std::lock_guard lock(mu_);
    segments_.push_back(Segment{first_seq, std::move(path), 0});
    return {};
}

Journal::~Journal() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    work_cv_.notify_all();
    if (flusher_.joinable()) flusher_.join();
}

std::uint64_t Journal::append(const fs::ChangeRecord& record, std::uint64_t epoch) noexcept {
    std::unique_lock lock(mu_);
    space_cv_.wait(lock, [&] { return buffer_.size() < options_.max_buffer_bytes || stop_; });
    const std::uint64_t seq = next_seq_++;
    const bool was_empty = buffer_.empty();
    if (was_empty) {
        buffer_first_seq_ = seq;
        last_cut_ = 0;
    }
    try {
        encode_record(seq, record, epoch, buffer_);
        if (buffer_.size() - last_cut_ >= kChunkBytes) {
            cuts_.push_back(Cut{buffer_.size(), seq});
            last_cut_ = buffer_.size();
        }
    } catch (...) {
        // Out of memory: nothing sane is left to do for a write-ahead log.
        spdlog::critical("journal {}: cannot buffer record {}", dir_, seq);
        std::terminate();
    }
    lock.unlock();
    // The flusher only waits while the buffer is empty: later appends need not wake it
    // (no futex call on the FUSE thread for them).
    if (was_empty) work_cv_.notify_one();
    return seq;
}

void Journal::flusher_loop() {
    std::string batch;
    std::vector<Cut> cuts;
    auto last_flush = std::chrono::steady_clock::time_point();
    for (;;) {
        std::uint64_t first = 0, last = 0;
        {
            std::unique_lock lock(mu_);
            work_cv_.wait(lock, [&] { return !buffer_.empty() || stop_; });
            if (buffer_.empty() && stop_) return;
            // Group commit: when the previous batch was written less than a window ago (a
            // burst), let appends collect for one window so that one write + fdatasync and
            // one wake-up of each sender cover them all, instead of one per record. A change
            // after a quiet period is flushed at once (no added latency).
            if (!stop_ && buffer_.size() < kCommitWindowBytes &&
                std::chrono::steady_clock::now() - last_flush < kCommitWindow) {
                lock.unlock();
                std::this_thread::sleep_for(kCommitWindow);
                lock.lock();
            }
            batch.clear();
            batch.swap(buffer_);
            cuts.clear();
            cuts.swap(cuts_);
            first = buffer_first_seq_;
            last = next_seq_ - 1;
        }
        space_cv_.notify_all();
        if (cuts.empty() || cuts.back().end != batch.size()) cuts.push_back(Cut{batch.size(), last});
        std::size_t begin = 0;
        for (const Cut& cut : cuts) {
            if (!write_chunk(std::string_view(batch).substr(begin, cut.end - begin), first, cut.last_seq)) return;
            begin = cut.end;
            first = cut.last_seq + 1;
        }
        last_flush = std::chrono::steady_clock::now();
    }
}

bool Journal::write_chunk(std::string_view chunk, std::uint64_t first, std::uint64_t last) {
    // Stopping while the disk refuses the records: retrying forever would hang the unmount.
    // What is not durable is lost from the journal only: no clean marker is written, so the
    // next mount reconciles the whole tree with checksums.
    const auto give_up = [&] {
        std::lock_guard lock(mu_);
        if (!stop_) return false;
        spdlog::error("journal {}: records {}..{} could not be written at stop; the next mount reconciles "
                      "every mirror in full",
                      dir_, first, next_seq_ - 1);
        return true;
    };
    if (active_size_ >= options_.segment_bytes) {
        for (;;) {
            auto r = open_segment(first);
            if (r) break;
            if (r.error().code == ENOSPC || r.error().code == EDQUOT) out_of_space_.store(true);
            { std::lock_guard lock(mu_); last_error_ = r.error().message; }
            spdlog::error("{}", r.error().message);
            if (give_up()) return false;
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
    }
    // Write + fdatasync, retrying on errors (ENOSPC, EIO): the records stay in the batch.
    // A failed attempt is undone by cutting the segment back to its durable end and the
    // whole chunk is written again. Continuing from where it stopped would be wrong after
    // a failed fdatasync: the kernel may have dropped the dirty pages and marked them
    // clean, so a second fdatasync succeeds without the data ever reaching the disk.
    std::string path;
    {
        std::lock_guard lock(mu_);
        path = segments_.back().path;
    }
    for (int attempt = 0;; ++attempt) {
        int err = 0;
        if (attempt > 0 && ::ftruncate(active_fd_.get(), static_cast<off_t>(active_size_)) != 0) err = errno;
        for (std::size_t done = 0; err == 0 && done < chunk.size();) {
            ssize_t n = ::write(active_fd_.get(), chunk.data() + done, chunk.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                err = errno;
                break;
            }
            done += static_cast<std::size_t>(n);
        }
        if (err == 0 && ::fdatasync(active_fd_.get()) != 0) err = errno;
        if (err == 0) break;
        std::string msg = path + ": journal write failed: " + errstr(err) + " (retrying)";
        spdlog::error("{}", msg);
        { std::lock_guard lock(mu_); last_error_ = msg; }
        if (give_up()) return false;
        if (err == ENOSPC || err == EDQUOT) {
            out_of_space_.store(true);
            // The chunk moves to a segment of its own (once the failed attempt is cut off
            // the old one, durably: records past its end in a segment that is no longer the
            // last would be corruption at replay), so that every older segment may be
            // deleted to free the space (Replicator: journal_max). Creating the file may
            // fail too: then retry here.
            if (active_size_ > 0 && ::ftruncate(active_fd_.get(), static_cast<off_t>(active_size_)) == 0 &&
                ::fdatasync(active_fd_.get()) == 0 && open_segment(first)) {
                std::lock_guard lock(mu_);
                path = segments_.back().path;
            }
        }
        std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    out_of_space_.store(false);
    active_size_ += chunk.size();
    {
        std::lock_guard lock(mu_);
        durable_seq_ = last;
        segments_.back().durable_end = active_size_;
        last_error_.clear();
    }
    durable_cv_.notify_all();
    return true;
}

std::uint64_t Journal::last_seq() const noexcept {
    std::lock_guard lock(mu_);
    return next_seq_ - 1;
}

std::uint64_t Journal::durable_seq() const noexcept {
    std::lock_guard lock(mu_);
    return durable_seq_;
}

std::uint64_t Journal::first_seq() const noexcept {
    std::lock_guard lock(mu_);
    return segments_.empty() ? next_seq_ : segments_.front().first_seq;
}

std::uint64_t Journal::stored_bytes() const noexcept {
    std::lock_guard lock(mu_);
    std::uint64_t total = 0;
    for (const auto& s : segments_) total += s.durable_end;
    return total;
}

std::string Journal::last_error() const {
    std::lock_guard lock(mu_);
    return last_error_;
}

bool Journal::wait_durable(std::uint64_t seq, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return durable_cv_.wait_for(lock, timeout, [&] { return durable_seq_ >= seq; });
}

void Journal::trim(std::uint64_t acked) noexcept {
    std::vector<std::string> doomed;
    {
        std::lock_guard lock(mu_);
        while (segments_.size() > 1 && segments_[1].first_seq <= acked + 1) {
            doomed.push_back(segments_.front().path);
            segments_.erase(segments_.begin());
        }
    }
    for (const auto& p : doomed) {
        if (::unlink(p.c_str()) != 0) spdlog::warn("{}: cannot delete trimmed segment: {}", p, errstr(errno));
    }
}

std::uint64_t Journal::trim_to_size(std::uint64_t max_bytes) noexcept {
    // The seq trim() must treat as acknowledged for the oldest segments to go until the
    // rest fits (segments are only added at the back meanwhile, by the flusher).
    std::uint64_t dropped_through = 0;
    {
        std::lock_guard lock(mu_);
        std::uint64_t total = 0;
        for (const auto& s : segments_) total += s.durable_end;
        for (std::size_t i = 0; i + 1 < segments_.size() && total > max_bytes; ++i) {
            total -= segments_[i].durable_end;
            dropped_through = segments_[i + 1].first_seq - 1;
        }
    }
    if (dropped_through != 0) trim(dropped_through);
    return dropped_through;
}

bool Journal::segment_info(std::uint64_t first_seq, std::uint64_t& end, std::uint64_t& next_first,
                           std::string& path) const {
    std::lock_guard lock(mu_);
    for (std::size_t i = 0; i < segments_.size(); ++i) {
        if (segments_[i].first_seq != first_seq) continue;
        end = segments_[i].durable_end;
        next_first = i + 1 < segments_.size() ? segments_[i + 1].first_seq : 0;
        path = segments_[i].path;
        return true;
    }
    return false;
}

std::uint64_t Journal::segment_for(std::uint64_t seq) const {
    std::lock_guard lock(mu_);
    std::uint64_t found = 0;
    for (const auto& s : segments_) {
        if (s.first_seq <= seq) found = s.first_seq;
    }
    return found;
}

Result<bool> Journal::Reader::next(DecodedRecord& out) {
    for (;;) {
        if (seg_first_ == 0) {
            if (next_ > journal_->durable_seq()) return false;
            const std::uint64_t first = journal_->segment_for(next_);
            if (first == 0) {
                return fail(journal_->dir_ + ": journal records from seq " + std::to_string(next_) +
                            " were already trimmed");
            }
            std::uint64_t end = 0, nf = 0;
            std::string path;
            if (!journal_->segment_info(first, end, nf, path)) continue;
            fd_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd_) return fail(path + ": " + errstr(errno), errno);
            seg_first_ = first;
            offset_ = 0;
            buf_.clear();
            pos_ = 0;
        }
        std::uint64_t end = 0, next_first = 0;
        std::string path;
        if (!journal_->segment_info(seg_first_, end, next_first, path)) {
            // Trimmed under us: only possible if our records were acked; reopen by seq.
            seg_first_ = 0;
            continue;
        }
        // Decode from the buffer what is complete and durable.
        while (pos_ < buf_.size()) {
            DecodeStatus st = decode_record(std::span<const char>(buf_.data() + pos_, buf_.size() - pos_), out);
            if (st == DecodeStatus::Short) break;
            if (st != DecodeStatus::Ok) {
                return fail(path + ": corrupt journal record at offset " + std::to_string(offset_ + pos_) + ": " +
                            to_string(st));
            }
            pos_ += out.size;
            if (out.seq < next_) continue;
            if (out.seq != next_) {
                return fail(path + ": journal record at offset " + std::to_string(offset_ + pos_ - out.size) +
                            " has seq " + std::to_string(out.seq) + ", expected " + std::to_string(next_));
            }
            ++next_;
            return true;
        }
        const std::uint64_t have_end = offset_ + buf_.size();
        if (have_end < end) {
            // Keep the unparsed tail, read more (at most up to the durable end).
            buf_.erase(0, pos_);
            offset_ += pos_;
            pos_ = 0;
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(end - have_end, 1 << 20));
            const std::size_t old = buf_.size();
            buf_.resize(old + want);
            ssize_t n = ::pread(fd_.get(), buf_.data() + old, want, static_cast<off_t>(have_end));
            if (n <= 0) {
                buf_.resize(old);
                return fail(path + ": read: " + (n < 0 ? errstr(errno) : std::string("unexpected end of file")));
            }
            buf_.resize(old + static_cast<std::size_t>(n));
            continue;
        }
        if (next_first != 0 && next_first == next_) {
            seg_first_ = 0;  // this segment is done; move on
            continue;
        }
        return false;
    }
}

}  // namespace sfs::repl
