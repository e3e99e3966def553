// Design note.
//  * Watches: one per directory, added through an fd opened beneath SOURCE (never a path
//    string: a symlink swap cannot redirect it, and SOURCE may be shadowed by the mount).
//    wd -> path and path -> wd maps are kept; a directory rename rewrites the paths of its
//    whole subtree; a directory moved out of SOURCE has its subtree's watches removed.
//  * New directories: the watch is added first, then the directory is listed and every
//    entry reported (Created/DirCreated, recursively) — entries made before the watch
//    existed are found by the listing, later ones by the watch (duplicates are harmless).
//  * Moves: IN_MOVED_FROM/IN_MOVED_TO are paired by cookie (the kernel queues them back to
//    back, so the pair is normally found in the same read). An IN_MOVED_FROM unpaired after
//    options.move_pair_window is a move out (Deleted); an unpaired IN_MOVED_TO a move in.
//  * IN_Q_OVERFLOW: the watch set may have missed new directories, so it is rebuilt from
//    scratch (new inotify instance, fresh walk) and only then Overflow("") is delivered.
//  * Watch limit (ENOSPC or options.max_inotify_watches): the directory stays unwatched,
//    Overflow(dir) is delivered, the error stays in status, and the subtree is not
//    descended (its entries are covered by that Overflow). Every rewatch_interval the
//    unwatched subtrees are tried again, each yielding one more Overflow (watched again, or
//    still not), so changes there are picked up late but never lost.
#include "replicator/watch/inotify_watcher.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "replicator/watch/paths.h"
#include "replicator/watch/tree_walk.h"

namespace sfs::repl::watch {
namespace {

constexpr std::uint32_t kMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY | IN_CLOSE_WRITE |
                                IN_ATTRIB | IN_ONLYDIR | IN_EXCL_UNLINK;
// No IN_DONT_FOLLOW: watches are added through /proc/self/fd/N, a magic link that must be
// followed; the fd itself was opened beneath SOURCE without following symlinks.
constexpr std::size_t kReadBuffer = 256 * 1024;
constexpr int kReadsPerWakeup = 8;

class InotifyWatcher final : public WatcherCore {
public:
    InotifyWatcher(UniqueFd root, std::string source_path, WatchOptions options, OutsideChangeSink& sink)
        : WatcherCore("inotify", std::move(root), std::move(source_path), std::move(options), sink,
                      /*echo_hints=*/true),
          buffer_(kReadBuffer) {}
    ~InotifyWatcher() override { stop(); }

    Result<void> arm() {
        if (auto r = new_instance(); !r) return r;
        watch_subtree("", /*report_entries=*/false);
        return start_thread();
    }

protected:
    int kernel_fd() const noexcept override { return ino_.get(); }

    void on_readable() noexcept override {
        try {
            drain();
        } catch (const std::exception& e) {
            record_error(std::string("event handling failed: ") + e.what());
            rebuild("inotify event handling failed");
        }
        end_batch();
    }

    bool holds_changes() const noexcept override { return !pending_.empty(); }

    std::optional<Clock::time_point> next_deadline() const noexcept override {
        std::optional<Clock::time_point> next;
        if (!pending_.empty()) next = pending_.front().deadline;
        if (!unwatched_.empty() && (!next || retry_at_ < *next)) next = retry_at_;
        return next;
    }

    void on_deadline(Clock::time_point now) noexcept override {
        try {
            while (!pending_.empty() && pending_.front().deadline <= now) {
                Pending p = std::move(pending_.front());
                pending_.erase(pending_.begin());
                moved_out(p.path, p.is_dir);
            }
            if (!unwatched_.empty() && retry_at_ <= now) retry_unwatched();
        } catch (const std::exception& e) {
            record_error(std::string("move expiry failed: ") + e.what());
            rebuild("inotify move expiry failed");
        }
    }

private:
    struct Pending {
        std::uint32_t cookie = 0;
        std::string path;
        bool is_dir = false;
        Clock::time_point deadline;
    };

    Result<void> new_instance() {
        UniqueFd fd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (!fd) return fail(source_path() + ": inotify_init1: " + std::strerror(errno), errno);
        ino_ = std::move(fd);
        wd_path_.clear();
        path_wd_.clear();
        pending_.clear();
        unwatched_.clear();
        watched_dirs_ = 0;
        return {};
    }

    // Adds watches to `rel` and every directory below it; with report_entries, every entry
    // found is reported as created.
    void watch_subtree(const std::string& rel, bool report_entries) {
        TreeWalkCallbacks cb;
        cb.on_dir = [this](const std::string& dir, int fd) { return add_watch(dir, fd); };
        cb.on_entry = [this, report_entries](const std::string& path, bool is_dir) {
            if (excluded(path)) return false;
            if (report_entries) {
                report(OutsideChange{is_dir ? OutsideChange::Kind::DirCreated : OutsideChange::Kind::Created, path,
                                     {}, is_dir});
            }
            return true;
        };
        cb.on_error = [this](const std::string& dir, int err) {
            record_error((dir.empty() ? std::string(".") : dir) + ": cannot watch: " + std::strerror(err));
            report_overflow(dir, "cannot list or open a directory");
        };
        walk_tree(root_fd(), rel, cb);
    }

    bool add_watch(const std::string& rel, int dir_fd) {
        if (options().max_inotify_watches != 0 && path_wd_.size() >= options().max_inotify_watches &&
            !path_wd_.contains(rel)) {
            watch_limit(rel, "the configured watch limit (" + std::to_string(options().max_inotify_watches) +
                                 ") is reached");
            return false;
        }
        char link[64];
        std::snprintf(link, sizeof link, "/proc/self/fd/%d", dir_fd);
        int wd = ::inotify_add_watch(ino_.get(), link, kMask);
        if (wd < 0) {
            if (errno == ENOSPC) {
                watch_limit(rel, "the kernel's inotify watch limit is reached (raise fs.inotify.max_user_watches)");
            } else {
                record_error((rel.empty() ? std::string(".") : rel) + ": inotify_add_watch: " + std::strerror(errno));
                report_overflow(rel, "cannot watch a directory");
            }
            return false;
        }
        if (auto it = wd_path_.find(wd); it != wd_path_.end()) {
            // Same directory already watched under another name (a rename not processed yet).
            path_wd_.erase(it->second);
            it->second = rel;
        } else {
            wd_path_.emplace(wd, rel);
        }
        path_wd_.insert_or_assign(rel, wd);
        watched_dirs_ = path_wd_.size();
        return true;
    }

    void watch_limit(const std::string& rel, const std::string& why) {
        record_error((rel.empty() ? std::string(".") : rel) + ": not watched: " + why);
        if (unwatched_.empty()) retry_at_ = Clock::now() + options().rewatch_interval;
        unwatched_.insert(rel);
        report_overflow(rel, "a directory cannot be watched");
    }

    // Tries again to watch the subtrees the limit left unwatched. Each gets one Overflow:
    // "now watched, reconcile what was missed" or, still failing, the watch_limit one — so
    // over the limit a subtree is reconciled every rewatch_interval instead of never.
    void retry_unwatched() {
        std::set<std::string> previous;
        previous.swap(unwatched_);
        retry_at_ = Clock::now() + options().rewatch_interval;
        for (const auto& dir : previous) {
            struct stat st{};
            if (::fstatat(root_fd(), dir.empty() ? "." : dir.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISDIR(st.st_mode) || excluded(dir)) {
                continue;  // gone or replaced: its parent (watched) reported that
            }
            watch_subtree(dir, /*report_entries=*/false);
            if (path_wd_.contains(dir)) report_overflow(dir, "a directory is watched again");
        }
        if (unwatched_.empty()) spdlog::info("watcher {}: every directory is watched again", source_path());
    }

    // Keeps unwatched_ in step with renames and removals seen by the watched parents.
    void rename_unwatched(const std::string& from, const std::optional<std::string>& to) {
        std::vector<std::string> moved;
        for (auto it = unwatched_.lower_bound(from); it != unwatched_.end() && it->starts_with(from);) {
            if (!is_same_or_under(*it, from)) {
                ++it;
                continue;
            }
            if (to) moved.push_back(*to + it->substr(from.size()));
            it = unwatched_.erase(it);
        }
        unwatched_.insert(moved.begin(), moved.end());
    }

    // Reads a bounded number of times, so a flood cannot starve the move-pairing and echo
    // deadlines; poll() reports the fd ready again at once if more is queued.
    void drain() {
        for (int reads = 0; reads < kReadsPerWakeup; ++reads) {
            ssize_t n = ::read(ino_.get(), buffer_.data(), buffer_.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return;
                record_error(std::string("read inotify queue: ") + std::strerror(errno));
                rebuild("cannot read the inotify queue");
                return;
            }
            // Parse the whole read first so a MOVED_FROM can find its MOVED_TO just after it.
            std::vector<const inotify_event*> events;
            for (ssize_t off = 0; off < n;) {
                auto* ev = reinterpret_cast<const inotify_event*>(buffer_.data() + off);
                events.push_back(ev);
                off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
            }
            for (std::size_t i = 0; i < events.size(); ++i) {
                const inotify_event* ev = events[i];
                ++events_seen_;
                if (ev->mask & IN_Q_OVERFLOW) {
                    rebuild("inotify event queue overflow (more than max_queued_events pending)");
                    return;  // the rest of this read belongs to the old instance
                }
                const inotify_event* next = i + 1 < events.size() ? events[i + 1] : nullptr;
                if (handle_event(ev, next)) {
                    ++i;
                    ++events_seen_;
                }
            }
        }
    }

    // Handles `ev`; returns true when it also consumed `next` (the MOVED_TO of a pair).
    bool handle_event(const inotify_event* ev, const inotify_event* next) {
        if (ev->mask & IN_IGNORED) {
            forget_wd(ev->wd);
            return false;
        }
        auto dir_it = wd_path_.find(ev->wd);
        if (dir_it == wd_path_.end()) return false;  // a watch already removed
        const std::string dir = dir_it->second;
        using K = OutsideChange::Kind;
        if (ev->len == 0 || ev->name[0] == '\0') {
            // Event on the watched directory itself; its parent reports it, except for SOURCE.
            if (dir.empty() && (ev->mask & IN_ATTRIB)) report(OutsideChange{K::Attrib, "", {}, true});
            return false;
        }
        const std::string path = join_path(dir, ev->name);
        const bool is_dir = (ev->mask & IN_ISDIR) != 0;
        if (ev->mask & IN_MOVED_FROM) {
            if (next != nullptr && (next->mask & IN_MOVED_TO) && next->cookie == ev->cookie) {
                auto to_dir = wd_path_.find(next->wd);
                if (to_dir != wd_path_.end() && next->len > 0) {
                    renamed(path, join_path(to_dir->second, next->name), is_dir);
                    return true;
                }
            }
            pending_.push_back(Pending{ev->cookie, path, is_dir, Clock::now() + options().move_pair_window});
            return false;
        }
        if (ev->mask & IN_MOVED_TO) {
            for (auto it = pending_.begin(); it != pending_.end(); ++it) {
                if (it->cookie == ev->cookie) {
                    std::string from = std::move(it->path);
                    pending_.erase(it);
                    renamed(from, path, is_dir);
                    return false;
                }
            }
            moved_in(path, is_dir);
            return false;
        }
        if (ev->mask & IN_CREATE) {
            if (is_dir) {
                moved_in(path, true);
            } else {
                report(OutsideChange{K::Created, path, {}, false});
            }
        }
        if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE)) report(OutsideChange{K::Modified, path, {}, is_dir});
        if (ev->mask & IN_ATTRIB) report(OutsideChange{K::Attrib, path, {}, is_dir});
        if (ev->mask & IN_DELETE) {
            if (is_dir) rename_unwatched(path, std::nullopt);
            report(OutsideChange{K::Deleted, path, {}, is_dir});
        }
        return false;
    }

    void renamed(const std::string& from, const std::string& to, bool is_dir) {
        bool list_to = false;
        if (is_dir) {
            rename_unwatched(from, excluded(to) ? std::nullopt : std::optional(to));
            if (excluded(to)) {
                unwatch_subtree(from);
            } else if (excluded(from)) {
                watch_subtree(to, /*report_entries=*/false);  // report_move lists it
            } else {
                move_subtree_paths(from, to);
                // Created and renamed before its watch could be added (the walk found `from`
                // gone): watch and list it now under its new name.
                list_to = !path_wd_.contains(to) && !unwatched_.contains(to);
            }
        }
        report_move(from, to, is_dir);
        if (list_to) watch_subtree(to, /*report_entries=*/true);
    }

    // A directory (with its subtree) or a file appeared from outside or was created.
    void moved_in(const std::string& path, bool is_dir) {
        if (!is_dir) {
            report_move(std::nullopt, path, false);
            return;
        }
        report(OutsideChange{OutsideChange::Kind::DirCreated, path, {}, true});
        if (!excluded(path)) watch_subtree(path, /*report_entries=*/true);
    }

    void moved_out(const std::string& path, bool is_dir) {
        if (is_dir) {
            unwatch_subtree(path);
            rename_unwatched(path, std::nullopt);
        }
        report_move(path, std::nullopt, is_dir);
    }

    // The watches of `dir` and below now belong to `to` and below.
    void move_subtree_paths(const std::string& from, const std::string& to) {
        std::vector<std::pair<std::string, int>> moved;
        for (auto it = path_wd_.lower_bound(from); it != path_wd_.end() && it->first.starts_with(from);) {
            if (!is_same_or_under(it->first, from)) {
                ++it;
                continue;
            }
            moved.emplace_back(to + it->first.substr(from.size()), it->second);
            it = path_wd_.erase(it);
        }
        for (auto& [path, wd] : moved) {
            wd_path_[wd] = path;
            path_wd_.insert_or_assign(path, wd);
        }
    }

    void unwatch_subtree(const std::string& dir) {
        for (auto it = path_wd_.lower_bound(dir); it != path_wd_.end() && it->first.starts_with(dir);) {
            if (!is_same_or_under(it->first, dir)) {
                ++it;
                continue;
            }
            ::inotify_rm_watch(ino_.get(), it->second);  // its IN_IGNORED finds no mapping
            wd_path_.erase(it->second);
            it = path_wd_.erase(it);
        }
        watched_dirs_ = path_wd_.size();
    }

    void forget_wd(int wd) {
        auto it = wd_path_.find(wd);
        if (it == wd_path_.end()) return;
        if (it->second.empty()) {
            // SOURCE's own watch went away: SOURCE was removed (or its filesystem unmounted).
            record_error("SOURCE itself was removed or unmounted; nothing below it is watched");
            report_overflow("", "SOURCE is gone");
        }
        if (auto p = path_wd_.find(it->second); p != path_wd_.end() && p->second == wd) path_wd_.erase(p);
        wd_path_.erase(it);
        watched_dirs_ = path_wd_.size();
    }

    // Starts over with a fresh instance and a fresh walk, then tells the sink to reconcile.
    void rebuild(const std::string& reason) {
        if (auto r = new_instance(); !r) {
            record_error(r.error().message);
            report_overflow("", reason + "; the watcher cannot restart");
            return;
        }
        watch_subtree("", /*report_entries=*/false);
        report_overflow("", reason);
    }

    UniqueFd ino_;
    std::vector<char> buffer_;
    std::unordered_map<int, std::string> wd_path_;
    std::map<std::string, int> path_wd_;  // ordered: subtrees are contiguous ranges
    std::vector<Pending> pending_;        // unpaired IN_MOVED_FROM, oldest first
    std::set<std::string> unwatched_;     // roots of subtrees the watch limit left unwatched
    Clock::time_point retry_at_{};
};

}  // namespace

Result<std::unique_ptr<Watcher>> start_inotify(UniqueFd root, std::string source_path, WatchOptions options,
                                               OutsideChangeSink& sink) {
    auto watcher = std::make_unique<InotifyWatcher>(std::move(root), std::move(source_path), std::move(options), sink);
    if (auto r = watcher->arm(); !r) return std::unexpected(r.error());
    return std::unique_ptr<Watcher>(std::move(watcher));
}

}  // namespace sfs::repl::watch
