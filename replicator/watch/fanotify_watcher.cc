// Design note.
//  * Identity and names: with FAN_REPORT_DFID_NAME every event names a directory (by file
//    handle) and an entry in it. A handle is turned into the directory's current path by
//    open_by_handle_at(O_PATH) + readlink; results are cached (bounded) and the cache is
//    dropped whenever a directory inside SOURCE, or an ancestor of SOURCE, is renamed or
//    removed (SOURCE's own path is re-read then). See after_directory_change().
//  * A handle that no longer opens (ESTALE) or opens a directory with no links left is a
//    directory that was removed since. Its events are dropped: the removal of its top-most removed
//    ancestor inside SOURCE is itself an event (or the directory was outside SOURCE), and
//    that Deleted covers the subtree. Counted in status as events seen, not reported.
//  * Renames: FAN_RENAME (5.17+) carries old and new names in one event. Without it there
//    is no cookie and no child file handle on dirent events (FAN_REPORT_TARGET_FID is 5.17+
//    too), so FAN_MOVED_FROM is paired with the next FAN_MOVED_TO of the same process and
//    the same type (dir or not): the kernel queues the two back to back, so only two renames
//    racing in one process can be mis-paired — then the receiver's verification of path2
//    (docs/watcher.md) repairs the content. A MOVED_FROM unpaired after
//    options.move_pair_window is a move out of SOURCE. The kernel merges dirent events of
//    one name (moved in, then moved on: MOVED_TO|MOVED_FROM in one event); such an event is
//    reported by the entry's existence now and takes no part in pairing.
//  * Merged events: fanotify may merge CREATE and DELETE of one name into one event; the
//    entry's existence when the event is read decides whether it is Created or Deleted.
//  * Queue: the default bounded 16384-event queue (no FAN_UNLIMITED_QUEUE); an overflow is
//    reported as Overflow("") after which the receiver reconciles the tree.
#include "replicator/watch/fanotify_watcher.h"

#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <vector>

#include "replicator/watch/paths.h"

namespace sfs::repl::watch {
namespace {

constexpr std::size_t kReadBuffer = 256 * 1024;
constexpr int kReadsPerWakeup = 8;
constexpr std::size_t kCacheMax = 8192;

std::string fd_path(int fd) {
    char link[64];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    std::string out(4096, '\0');
    ssize_t n = ::readlink(link, out.data(), out.size());
    if (n < 0) return {};
    out.resize(static_cast<std::size_t>(n));
    return out;
}

// One FID-carrying info record of an event.
struct FidInfo {
    const file_handle* handle = nullptr;
    std::string_view name;  // empty for records without a name
    bool valid() const noexcept { return handle != nullptr; }
    std::string_view key() const noexcept {
        return {reinterpret_cast<const char*>(handle), sizeof(file_handle) + handle->handle_bytes};
    }
};

struct EventInfo {
    FidInfo dfid_name;  // DFID_NAME or DFID
    FidInfo old_dfid_name;
    FidInfo new_dfid_name;
    FidInfo child;      // FID of the object itself
};

// Parses the info records of the event at `raw` (whose metadata is `meta`); false when they
// are malformed.
bool parse_info(const fanotify_event_metadata* meta, const char* raw, EventInfo& out) {
    if (meta->metadata_len < sizeof(fanotify_event_metadata) || meta->metadata_len > meta->event_len) return false;
    const char* p = raw + meta->metadata_len;
    const char* end = raw + meta->event_len;
    while (p + sizeof(fanotify_event_info_header) <= end) {
        auto* hdr = reinterpret_cast<const fanotify_event_info_header*>(p);
        if (hdr->len < sizeof(fanotify_event_info_header) || p + hdr->len > end) return false;
        const char* rec_end = p + hdr->len;
        FidInfo* slot = nullptr;
        bool named = false;
        switch (hdr->info_type) {
            case FAN_EVENT_INFO_TYPE_FID: slot = &out.child; break;
            case FAN_EVENT_INFO_TYPE_DFID: slot = &out.dfid_name; break;
            case FAN_EVENT_INFO_TYPE_DFID_NAME: slot = &out.dfid_name; named = true; break;
            case FAN_EVENT_INFO_TYPE_OLD_DFID_NAME: slot = &out.old_dfid_name; named = true; break;
            case FAN_EVENT_INFO_TYPE_NEW_DFID_NAME: slot = &out.new_dfid_name; named = true; break;
            default: break;  // pidfd, error records: not requested, skipped
        }
        if (slot != nullptr) {
            auto* fid = reinterpret_cast<const fanotify_event_info_fid*>(p);
            const char* h = reinterpret_cast<const char*>(fid->handle);
            if (h + sizeof(file_handle) > rec_end) return false;
            auto* fh = reinterpret_cast<const file_handle*>(h);
            const char* after = h + sizeof(file_handle) + fh->handle_bytes;
            if (after > rec_end) return false;
            slot->handle = fh;
            if (named) {
                std::size_t max = static_cast<std::size_t>(rec_end - after);
                slot->name = std::string_view(after, ::strnlen(after, max));
            }
        }
        p = rec_end;
    }
    return true;
}

class FanotifyWatcher final : public WatcherCore {
public:
    FanotifyWatcher(UniqueFd fan, bool has_rename, UniqueFd root, std::string source_path, WatchOptions options,
                    OutsideChangeSink& sink)
        : WatcherCore("fanotify", std::move(root), std::move(source_path), std::move(options), sink,
                      /*echo_hints=*/false),
          fan_(std::move(fan)),
          buffer_(kReadBuffer) {
        refresh_root();
        spdlog::debug("watcher {}: fanotify, renames {}", this->source_path(),
                      has_rename ? "as FAN_RENAME" : "paired from FAN_MOVED_FROM/TO by file handle");
    }
    ~FanotifyWatcher() override { stop(); }

    Result<void> go() { return start_thread(); }

protected:
    int kernel_fd() const noexcept override { return fan_.get(); }

    void on_readable() noexcept override {
        try {
            drain();
        } catch (const std::exception& e) {
            record_error(std::string("event handling failed: ") + e.what());
            report_overflow("", "fanotify event handling failed");
        }
        end_batch();
    }

    bool holds_changes() const noexcept override { return !pending_.empty(); }

    std::optional<Clock::time_point> next_deadline() const noexcept override {
        if (pending_.empty()) return std::nullopt;
        return pending_.front().deadline;
    }

    void on_deadline(Clock::time_point now) noexcept override {
        try {
            while (!pending_.empty() && pending_.front().deadline <= now) {
                Pending p = std::move(pending_.front());
                pending_.erase(pending_.begin());
                report_move(p.from, std::nullopt, p.is_dir);
            }
        } catch (const std::exception& e) {
            record_error(std::string("move expiry failed: ") + e.what());
        }
    }

private:
    // Where a directory entry lies now.
    enum class Where { Inside, Outside, Gone, Error };
    struct Resolved {
        Where where = Where::Error;
        std::string rel;  // Inside only
    };
    struct Pending {
        pid_t pid = 0;
        std::optional<std::string> from;
        bool is_dir = false;
        Clock::time_point deadline;
    };

    void refresh_root() { root_abs_ = fd_path(root_fd()); }

    // Reads a bounded number of times, so a flood cannot starve the move-pairing and echo
    // deadlines; poll() reports the fd ready again at once if more is queued.
    void drain() {
        for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
            ssize_t n = ::read(fan_.get(), buffer_.data(), buffer_.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                record_error(std::string("read fanotify queue: ") + std::strerror(errno));
                report_overflow("", "cannot read the fanotify queue");
                return;
            }
            // Events are only 4-byte aligned (names make them any length), so each one's
            // metadata is copied out before use rather than read in place.
            const std::size_t len = static_cast<std::size_t>(n);
            for (std::size_t off = 0; off + sizeof(fanotify_event_metadata) <= len;) {
                fanotify_event_metadata meta;
                std::memcpy(&meta, buffer_.data() + off, sizeof meta);
                if (meta.event_len < sizeof meta || off + meta.event_len > len) {
                    record_error("malformed fanotify event length");
                    report_overflow("", "malformed fanotify event");
                    break;
                }
                handle_event(&meta, buffer_.data() + off);
                off += meta.event_len;
            }
        }
    }

    void handle_event(const fanotify_event_metadata* meta, const char* raw) {
        ++events_seen_;
        if (meta->fd >= 0) ::close(meta->fd);  // not expected in FID mode; never leak it
        if (meta->vers != FANOTIFY_METADATA_VERSION) {
            record_error("fanotify metadata version mismatch");
            report_overflow("", "unreadable fanotify event");
            return;
        }
        if (meta->mask & FAN_Q_OVERFLOW) {
            pending_.clear();
            cache_.clear();  // lost events may include directory renames
            refresh_root();
            report_overflow("", "fanotify event queue overflow (more than 16384 events pending)");
            return;
        }
        const bool is_dir = (meta->mask & FAN_ONDIR) != 0;
        EventInfo info;
        const bool parsed = parse_info(meta, raw, info);
        // Before the pid filter: syncfs's own directory renames move cached paths too.
        if (is_dir && (meta->mask & (FAN_RENAME | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE))) {
            after_directory_change(parsed ? &info : nullptr);
        }
        if (options().ignore_pid != 0 && meta->pid == options().ignore_pid) {
            ++own_dropped_;
            return;
        }
        if (!parsed) {
            record_error("malformed fanotify event");
            report_overflow("", "malformed fanotify event");
            return;
        }
        if (meta->mask & FAN_RENAME) {
            handle_move(info.old_dfid_name, info.new_dfid_name, is_dir);
            return;
        }
        constexpr std::uint64_t kDirent = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO;
        if ((meta->mask & (FAN_MOVED_FROM | FAN_MOVED_TO)) && std::popcount(meta->mask & kDirent) > 1) {
            // The kernel merged several dirent events of one name (e.g. moved in, then moved
            // on): their order and counterparts are unknown, so report the entry's state now
            // and let the other halves come out unpaired (conservative, never wrong).
            Resolved where = resolve(info.dfid_name);
            if (where.where != Where::Inside) return;
            if (exists(where.rel)) {
                report_move(std::nullopt, where.rel, is_dir);
            } else {
                report_move(where.rel, std::nullopt, is_dir);
            }
            return;
        }
        if (meta->mask & FAN_MOVED_FROM) {
            Resolved from = resolve(info.dfid_name);
            if (from.where == Where::Error) return;
            pending_.push_back(Pending{meta->pid, from.where == Where::Inside ? std::optional(from.rel) : std::nullopt,
                                       is_dir, Clock::now() + options().move_pair_window});
            return;
        }
        if (meta->mask & FAN_MOVED_TO) {
            Resolved to = resolve(info.dfid_name);
            std::optional<std::string> from;
            for (auto it = pending_.begin(); it != pending_.end(); ++it) {
                if (it->pid == meta->pid && it->is_dir == is_dir) {
                    from = std::move(it->from);
                    pending_.erase(it);
                    break;
                }
            }
            if (to.where == Where::Error) return;
            report_move(from, to.where == Where::Inside ? std::optional(to.rel) : std::nullopt, is_dir);
            return;
        }
        // Without a directory record the object has no name any more (an unlinked, still
        // open file): its own handle then has no links left and the event is dropped.
        Resolved where = resolve(info.dfid_name.valid() ? info.dfid_name : info.child);
        if (where.where != Where::Inside) return;
        const std::string& path = where.rel;
        using K = OutsideChange::Kind;
        if (meta->mask & (FAN_CREATE | FAN_DELETE)) {
            bool created = (meta->mask & FAN_CREATE) != 0;
            if ((meta->mask & FAN_DELETE) && created) created = exists(path);  // merged event
            if (created) {
                report(OutsideChange{is_dir ? K::DirCreated : K::Created, path, {}, is_dir});
            } else {
                report(OutsideChange{K::Deleted, path, {}, is_dir});
                return;
            }
        }
        if (meta->mask & (FAN_MODIFY | FAN_CLOSE_WRITE)) report(OutsideChange{K::Modified, path, {}, is_dir});
        if (meta->mask & FAN_ATTRIB) report(OutsideChange{K::Attrib, path, {}, is_dir});
    }

    void handle_move(const FidInfo& old_info, const FidInfo& new_info, bool is_dir) {
        Resolved from = resolve(old_info);
        Resolved to = resolve(new_info);
        if (from.where == Where::Error || to.where == Where::Error) return;
        report_move(from.where == Where::Inside ? std::optional(from.rel) : std::nullopt,
                    to.where == Where::Inside ? std::optional(to.rel) : std::nullopt, is_dir);
    }

    bool exists(const std::string& rel) const {
        struct stat st{};
        return ::fstatat(root_fd(), rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    }

    // The entry (directory handle + name) of an event, relative to SOURCE. An unresolvable
    // handle for another reason than ESTALE is an error: then an Overflow is reported.
    Resolved resolve(const FidInfo& info) {
        if (!info.valid()) {
            record_error("fanotify event without a directory handle");
            report_overflow("", "fanotify event without a directory handle");
            return {};
        }
        std::string abs = entry_path(info);
        if (abs == kError) return {};
        if (abs.empty()) return {Where::Gone, {}};
        return relativize(abs);
    }

    // The absolute path of the entry (directory handle + name): "" when the directory is
    // gone, kError when it cannot be resolved (already reported).
    std::string entry_path(const FidInfo& info) {
        std::string dir_abs;
        std::string key(info.key());
        if (auto it = cache_.find(key); it != cache_.end()) {
            dir_abs = it->second;
        } else {
            dir_abs = open_handle_path(info.handle);
            if (dir_abs == kError) return dir_abs;
            if (cache_.size() >= kCacheMax) cache_.clear();
            cache_.emplace(std::move(key), dir_abs);
        }
        if (dir_abs.empty()) return {};
        if (!info.name.empty() && info.name != ".") {
            if (dir_abs != "/") dir_abs.push_back('/');
            dir_abs.append(info.name);
        }
        return dir_abs;
    }

    // A directory was renamed or removed somewhere on the filesystem. Cached paths can only
    // have become wrong in a way that matters when the change touches SOURCE: an entry
    // inside it, or an ancestor of SOURCE. Stale paths of directories outside stay outside
    // (a move into SOURCE has its new parent inside), so the cache survives the constant
    // churn of unrelated directories on a shared filesystem.
    void after_directory_change(const EventInfo* info) {
        bool touches = info == nullptr;
        if (info != nullptr) {
            for (const FidInfo* f : {&info->dfid_name, &info->old_dfid_name, &info->new_dfid_name}) {
                if (!f->valid()) continue;
                std::string abs = entry_path(*f);
                if (abs == kError) {
                    touches = true;
                    break;
                }
                if (abs.empty()) continue;  // in a removed directory
                if (root_abs_.empty() || relativize(abs).where == Where::Inside || root_abs_.starts_with(abs + "/") ||
                    abs == "/") {
                    touches = true;
                    break;
                }
            }
        }
        if (!touches) return;
        cache_.clear();
        refresh_root();
    }

    static constexpr const char* kError = "\x01";
    static constexpr int kHandleRetries = 7;  // sleeps 1+2+...+64 ms before giving up

    // The current absolute path of a directory handle; "" when it is gone; kError on error.
    std::string open_handle_path(const file_handle* handle) {
        std::vector<unsigned char> copy(sizeof(file_handle) + handle->handle_bytes);
        std::memcpy(copy.data(), handle, copy.size());
        // ENOMEM here is transient: the filesystem could not allocate the inode or dentry to
        // decode the handle into (a memory cgroup at its limit reclaims little under GFP_NOFS).
        // A short bounded backoff (about 0.1 s in all) resolves it far more cheaply than the
        // whole-tree reconcile that giving up costs.
        UniqueFd fd;
        for (int attempt = 0;; ++attempt) {
            fd = UniqueFd(::open_by_handle_at(root_fd(), reinterpret_cast<file_handle*>(copy.data()),
                                              O_PATH | O_CLOEXEC));
            if (fd || errno != ENOMEM || attempt == kHandleRetries) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(1 << attempt));
        }
        if (!fd) {
            if (errno == ESTALE || errno == ENOENT) return {};
            record_error(std::string("open_by_handle_at: ") + std::strerror(errno));
            report_overflow("", "cannot resolve a fanotify directory handle");
            return kError;
        }
        // A removed directory has no links left (its path would end in " (deleted)", which a
        // live directory may also be called).
        struct stat st{};
        if (::fstat(fd.get(), &st) != 0 || st.st_nlink == 0) return {};
        return fd_path(fd.get());
    }

    Resolved relativize(const std::string& abs) const {
        if (root_abs_.empty()) return {Where::Outside, {}};
        if (root_abs_ == "/") return {Where::Inside, abs.substr(1)};
        if (abs == root_abs_) return {Where::Inside, {}};
        if (abs.size() > root_abs_.size() && abs.starts_with(root_abs_) && abs[root_abs_.size()] == '/') {
            return {Where::Inside, abs.substr(root_abs_.size() + 1)};
        }
        return {Where::Outside, {}};
    }

    UniqueFd fan_;
    std::vector<char> buffer_;
    std::string root_abs_;                                  // SOURCE's current absolute path
    std::unordered_map<std::string, std::string> cache_;   // handle bytes -> dir path ("" = gone)
    std::vector<Pending> pending_;                          // unpaired MOVED_FROM, oldest first
};

}  // namespace

Result<std::unique_ptr<Watcher>> start_fanotify(UniqueFd root, std::string source_path, WatchOptions options,
                                                OutsideChangeSink& sink) {
    // Sets up one fanotify group; FAN_RENAME needs both the init flag and the event bit.
    auto arm = [&](bool with_rename) -> Result<UniqueFd> {
        unsigned flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK;
        flags |= with_rename ? FAN_REPORT_DFID_NAME_TARGET : (FAN_REPORT_DFID_NAME | FAN_REPORT_FID);
        UniqueFd fan(::fanotify_init(flags, O_RDONLY | O_LARGEFILE | O_CLOEXEC));
        if (!fan) return fail(source_path + ": fanotify_init: " + std::strerror(errno), errno);
        std::uint64_t mask = FAN_CREATE | FAN_DELETE | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_ONDIR;
        mask |= with_rename ? FAN_RENAME : (FAN_MOVED_FROM | FAN_MOVED_TO);
        if (::fanotify_mark(fan.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, root.get(), nullptr) != 0) {
            return fail(source_path + ": fanotify_mark(FAN_MARK_FILESYSTEM): " + std::strerror(errno), errno);
        }
        return fan;
    };
    // Every event is resolved through a file handle: refuse a filesystem that cannot
    // open its own handles (it would turn every event into an Overflow).
    {
        std::vector<unsigned char> buf(sizeof(file_handle) + MAX_HANDLE_SZ);
        auto* fh = reinterpret_cast<file_handle*>(buf.data());
        fh->handle_bytes = MAX_HANDLE_SZ;
        int mount_id = 0;
        if (::name_to_handle_at(root.get(), "", fh, &mount_id, AT_EMPTY_PATH) != 0) {
            return fail(source_path + ": name_to_handle_at: " + std::strerror(errno), errno);
        }
        UniqueFd probe(::open_by_handle_at(root.get(), fh, O_PATH | O_CLOEXEC));
        if (!probe) return fail(source_path + ": open_by_handle_at: " + std::strerror(errno), errno);
    }
    bool has_rename = !options.fanotify_without_rename;
    auto fan = has_rename ? arm(true) : fail("FAN_RENAME not wanted");
    if (!fan) {
        if (has_rename) spdlog::debug("watcher {}: fanotify without FAN_RENAME: {}", source_path, fan.error().message);
        has_rename = false;
        fan = arm(false);
    }
    if (!fan) return std::unexpected(fan.error());
    auto watcher = std::make_unique<FanotifyWatcher>(std::move(*fan), has_rename, std::move(root),
                                                     std::move(source_path), std::move(options), sink);
    if (auto r = watcher->go(); !r) return std::unexpected(r.error());
    return std::unique_ptr<Watcher>(std::move(watcher));
}

}  // namespace sfs::repl::watch
