#include "replicator/reconcile.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <librsync.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "common/unique_fd.h"
#include "common/xattrs.h"
#include "protocol/native/content_hash.h"
#include "protocol/native/xattr_summary.h"

namespace sfs::repl {
namespace proto = protocol::native;

namespace {

constexpr std::uint64_t kDeltaMinSize = 64 * 1024;  // below this a literal copy is cheaper

struct SrcEntry {
    std::string path;
    struct stat st;
    std::string target;
};

proto::Timestamp ts(const timespec& t) {
    return proto::Timestamp{static_cast<std::int64_t>(t.tv_sec), static_cast<std::uint32_t>(t.tv_nsec)};
}

proto::NodeType type_of(mode_t mode) {
    switch (mode & S_IFMT) {
        case S_IFDIR: return proto::NodeType::Directory;
        case S_IFLNK: return proto::NodeType::Symlink;
        case S_IFIFO: return proto::NodeType::Fifo;
        case S_IFSOCK: return proto::NodeType::Socket;
        case S_IFCHR: return proto::NodeType::CharDev;
        case S_IFBLK: return proto::NodeType::BlockDev;
        default: return proto::NodeType::Regular;
    }
}

std::string join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }

std::string parent_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// Pre-order walk of SOURCE below `dirfd`, siblings in byte order, symlinks not followed.
// Directories that cannot be read go to `unreadable`: nothing below them is deleted on the mirror.
void walk(int dirfd, const std::string& prefix, const std::vector<std::string>& excludes, std::vector<SrcEntry>& out,
          std::vector<std::string>& unreadable) {
    // A new open file description (not dup: that would share the offset of the caller's fd,
    // and a second walk would find the directory empty).
    int own = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR* d = own < 0 ? nullptr : ::fdopendir(own);
    if (!d) {
        if (own >= 0) ::close(own);
        unreadable.push_back(prefix);
        spdlog::warn("reconcile: cannot read directory '{}' of SOURCE: {}", prefix, std::strerror(errno));
        return;
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        names.emplace_back(e->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
        std::string path = join(prefix, name);
        if (excluded(excludes, path)) continue;
        SrcEntry entry{path, {}, {}};
        if (::fstatat(dirfd, name.c_str(), &entry.st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // vanished
        if (S_ISLNK(entry.st.st_mode)) {
            char buf[4096];
            ssize_t n = ::readlinkat(dirfd, name.c_str(), buf, sizeof buf);
            if (n < 0) continue;
            entry.target.assign(buf, static_cast<std::size_t>(n));
        }
        const bool is_dir = S_ISDIR(entry.st.st_mode);
        out.push_back(std::move(entry));
        if (is_dir) {
            UniqueFd sub(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub) {
                walk(sub.get(), path, excludes, out, unreadable);
            } else {
                unreadable.push_back(path);
            }
        }
    }
}

// Drives a librsync job: input from `read` (0 = end), output to `write`.
Result<void> pump(rs_job_t* job, const std::function<ssize_t(char*, std::size_t)>& read,
                  const std::function<Result<void>(const char*, std::size_t)>& write) {
    std::vector<char> in(256 * 1024), out(proto::kMaxChunk);
    rs_buffers_t b{};
    bool eof = false;
    for (;;) {
        if (b.avail_in == 0 && !eof) {
            ssize_t n = read(in.data(), in.size());
            if (n < 0) return fail(std::string("read: ") + std::strerror(errno), errno);
            if (n == 0) eof = true;
            b.next_in = in.data();
            b.avail_in = static_cast<std::size_t>(n);
        } else if (b.avail_in > 0 && b.next_in != in.data()) {
            std::memmove(in.data(), b.next_in, b.avail_in);
            b.next_in = in.data();
            if (!eof) {
                ssize_t n = read(in.data() + b.avail_in, in.size() - b.avail_in);
                if (n < 0) return fail(std::string("read: ") + std::strerror(errno), errno);
                if (n == 0) eof = true;
                b.avail_in += static_cast<std::size_t>(n);
            }
        }
        b.eof_in = eof ? 1 : 0;
        b.next_out = out.data();
        b.avail_out = out.size();
        rs_result res = rs_job_iter(job, &b);
        const std::size_t produced = out.size() - b.avail_out;
        if (produced > 0) {
            if (auto r = write(out.data(), produced); !r) return r;
        }
        if (res == RS_DONE) return {};
        if (res != RS_BLOCKED) return fail(std::string("librsync: ") + rs_strerror(res));
    }
}

class Reconciler {
public:
    Reconciler(MirrorChannel& ch, int source, const std::vector<std::string>& excludes, bool checksum, bool xattrs)
        : ch_(ch), source_(source), excludes_(excludes), checksum_(checksum), xattrs_(xattrs) {}

    void set_content_check(std::function<bool(const std::string&)> fn) { content_check_ = std::move(fn); }

    Result<void> run() {
        const auto started = std::chrono::steady_clock::now();
        ch_.progress(std::string("reconcile: listing the mirror") + (checksum_ ? " with checksums" : ""));
        std::string incomplete;
        const std::uint32_t flags =
            proto::kListRecursive | (checksum_ ? std::uint32_t{proto::kListChecksums} : 0u) | xattr_flag();
        auto listing = ch_.list("", flags, incomplete);
        if (!listing) return std::unexpected(listing.error());
        for (auto& e : *listing) mirror_.emplace(e.path, std::move(e));
        ch_.progress("reconcile: walking SOURCE (" + std::to_string(mirror_.size()) + " entries on the mirror)");
        struct stat root_st;
        if (::fstat(source_, &root_st) != 0) return fail(std::string("SOURCE: fstat: ") + std::strerror(errno));
        source_entries_.push_back(SrcEntry{"", root_st, {}});
        std::vector<std::string> unreadable;
        walk(source_, "", excludes_, source_entries_, unreadable);
        const std::size_t total = source_entries_.size();
        const std::size_t deleted = apply(unreadable, incomplete, /*progress=*/true);
        if (deleted == kConnLost) return fail(conn_lost_, ENOTCONN);
        const auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
        ch_.progress("reconcile: done, " + std::to_string(total) + " entries checked, " + std::to_string(changed_) +
                     " changed, " + std::to_string(deleted) + " deleted, " + std::to_string(bytes_) +
                     " bytes of content sent in " + std::to_string(secs.count()) + " ms" +
                     (errors_ ? ", " + std::to_string(errors_) + " unreadable in SOURCE" : "") +
                     (vanished_ ? ", " + std::to_string(vanished_) + " changed meanwhile" : ""));
        if (errors_) return fail(std::to_string(errors_) + " entries of SOURCE could not be read");
        return {};
    }

    // Outside changes (journaled Verify records, docs/watcher.md): makes each item's path
    // (and subtree) on the mirror equal SOURCE's current state. Every listing of the batch
    // is fetched in one pipelined round trip; items covered by a subtree item are dropped.
    std::uint32_t xattr_flag() const { return xattrs_ ? std::uint32_t{proto::kListXattrs} : 0u; }

    Result<VerifyOutcome> run_paths(std::vector<VerifyItem> items) {
        VerifyOutcome out;
        normalize(items);
        if (items.empty()) return out;
        // Listings of each item and of each item's parent (does the mirror have the directory
        // the item goes into?), in one round trip.
        std::vector<std::pair<std::string, std::uint32_t>> req;
        std::map<std::string, std::size_t> parent_req;
        for (const auto& it : items) req.emplace_back(it.path, (it.subtree ? std::uint32_t{proto::kListRecursive} : 0u) | xattr_flag());
        for (const auto& it : items) {
            if (it.path.empty()) continue;
            const std::string parent = parent_of(it.path);
            if (parent_req.emplace(parent, req.size()).second) req.emplace_back(parent, 0u);
        }
        auto got = ch_.list_many(req);
        if (!got) return fail(got.error().message, ENOTCONN);
        std::map<std::string, bool> dir_on_mirror;  // path -> the mirror has a directory there
        auto is_dir_entry = [](const Result<std::vector<proto::ListEntry>>& r) {
            return r && !r->empty() && r->front().type == proto::NodeType::Directory;
        };
        for (const auto& [parent, index] : parent_req) dir_on_mirror[parent] = is_dir_entry((*got)[index]);
        dir_on_mirror[""] = true;

        std::vector<std::string> covered;  // subtrees already made equal in this batch
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (ch_.stopping()) return fail("stopped", ENOTCONN);
            VerifyItem item = items[i];
            ch_.set_record(item.record);
            if (std::any_of(covered.begin(), covered.end(), [&](const std::string& c) { return under(item.path, c); })) {
                continue;
            }
            struct stat st{};
            const bool in_source = item.path.empty() ? ::fstat(source_, &st) == 0
                                                     : ::fstatat(source_, item.path.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
            Listed listing = to_listed(std::move((*got)[i]));
            if (in_source && !item.path.empty()) {
                // The mirror lacks a directory above: verify from the highest one it lacks.
                std::string top = item.path;
                for (std::string a = parent_of(item.path);; a = parent_of(a)) {
                    auto known = dir_on_mirror.find(a);
                    bool has;
                    if (known != dir_on_mirror.end()) {
                        has = known->second;
                    } else {
                        auto one = ch_.list_many({{a, 0u}});
                        if (!one) return fail(one.error().message, ENOTCONN);
                        has = dir_on_mirror[a] = is_dir_entry(one->front());
                    }
                    if (has) break;
                    top = a;
                }
                if (top != item.path) {
                    spdlog::debug("outside change '{}': the mirror lacks '{}': verifying it whole", item.path, top);
                    item = VerifyItem{top, true, item.record};
                    listing = relist(item.path, true);
                    if (listing.err == ENOTCONN) return fail(listing.message, ENOTCONN);
                    if (::fstatat(source_, item.path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
                }
            }
            if (listing.err == ENOTCONN) return fail(listing.message, ENOTCONN);
            if (listing.err != 0 && listing.err != ENOENT && listing.err != ENOTDIR) {
                spdlog::warn("outside change '{}': {}: reconciling the whole tree", item.path, listing.message);
                out.needs_full = true;
                continue;
            }
            bool mirror_has = listing.err == 0 && !listing.entries.empty();
            const bool mirror_dir = mirror_has && listing.entries.front().type == proto::NodeType::Directory;
            const bool src_dir = in_source && S_ISDIR(st.st_mode);
            // A directory on the mirror that SOURCE no longer has there: its entries must go too.
            if (mirror_dir && !src_dir && !item.subtree) {
                listing = relist(item.path, true);
                if (listing.err == ENOTCONN) return fail(listing.message, ENOTCONN);
                if (listing.err != 0) {
                    out.needs_full = true;
                    continue;
                }
                mirror_has = !listing.entries.empty();
            }
            // A directory the mirror lacks (or has as another type) is sent whole.
            const bool whole = src_dir && (item.subtree || !mirror_dir);
            mirror_.clear();
            source_entries_.clear();
            changed_dirs_.clear();
            resent_.clear();
            links_.clear();
            if (mirror_has) {
                for (auto& e : listing.entries) mirror_.emplace(e.path, std::move(e));
            }
            std::vector<std::string> unreadable;
            if (in_source) {
                SrcEntry e{item.path, st, {}};
                if (S_ISLNK(st.st_mode)) {
                    char buf[4096];
                    ssize_t n = ::readlinkat(source_, item.path.c_str(), buf, sizeof buf);
                    if (n < 0) continue;  // replaced meanwhile: a later change covers it
                    e.target.assign(buf, static_cast<std::size_t>(n));
                }
                source_entries_.push_back(std::move(e));
                if (whole) {
                    if (item.path.empty()) {
                        walk(source_, "", excludes_, source_entries_, unreadable);
                    } else {
                        UniqueFd sub(::openat(source_, item.path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                        if (sub) {
                            walk(sub.get(), item.path, excludes_, source_entries_, unreadable);
                        } else {
                            unreadable.push_back(item.path);
                        }
                    }
                }
            }
            if (!in_source && !mirror_has) continue;
            // Files with several hard links: their other names (anywhere in SOURCE) are
            // verified with them, so they stay links of one file on the mirror.
            if (auto r = add_other_links(out); !r) return std::unexpected(r.error());
            const std::uint64_t changed_before = changed_;
            const std::size_t deleted = apply(unreadable, std::string(), false);
            if (deleted == kConnLost) return fail(conn_lost_, ENOTCONN);
            if (whole || !in_source) covered.push_back(item.path);
            dir_on_mirror[item.path] = src_dir;
            out.changed += changed_ - changed_before;
            ++out.verified;
        }
        out.bytes = bytes_;
        out.unreadable = errors_;
        return out;
    }

    // Makes the mirror entries in mirror_ equal source_entries_ (both cover the same part of
    // the tree): deletions deepest first (never below an unreadable directory, never on an
    // incomplete listing), then every entry, then directory attributes deepest first.
    // Returns the number of deletions, or kConnLost (message in conn_lost_).
    std::size_t apply(const std::vector<std::string>& unreadable, const std::string& incomplete, bool progress) {
        std::set<std::string> in_source;
        for (const auto& e : source_entries_) in_source.insert(e.path);

        // Deletions, deepest first (reverse pre-order), never on a partial listing.
        std::vector<const proto::ListEntry*> doomed;
        for (const auto& [path, m] : mirror_) {
            if (path.empty() || excluded(excludes_, path)) continue;
            if (std::any_of(unreadable.begin(), unreadable.end(), [&](const std::string& u) {
                    return u.empty() || path == u || path.starts_with(u + "/");
                })) {
                continue;
            }
            if (!in_source.count(path)) doomed.push_back(&m);
        }
        for (const auto& e : source_entries_) {
            auto m = mirror_.find(e.path);
            if (m != mirror_.end() && !e.path.empty() && m->second.type != type_of(e.st.st_mode)) {
                doomed.push_back(&m->second);
            }
        }
        std::sort(doomed.begin(), doomed.end(), [](auto* a, auto* b) { return a->path > b->path; });
        if (!incomplete.empty() && !doomed.empty()) {
            spdlog::warn("reconcile: mirror listing incomplete ({}); not deleting {} entries", incomplete, doomed.size());
            doomed.clear();
        }
        std::set<std::string> deleted;
        for (const auto* m : doomed) {
            if (auto r = remove(*m); !r) return lost(r);
            deleted.insert(m->path);
            changed_dirs_.insert(parent_of(m->path));
        }
        for (const auto& p : deleted) mirror_.erase(p);

        const std::size_t total = source_entries_.size();
        std::size_t done = 0;
        auto last_progress = std::chrono::steady_clock::now();
        for (const auto& e : source_entries_) {
            if (ch_.stopping()) return lost(fail("stopped"));
            auto r = sync_entry(e);
            if (r && xattrs_) r = sync_xattrs(e);
            if (!r) {
                if (r.error().code == ENOTCONN) return lost(r);
                // One file that cannot be read (vanished, permission) does not stop the pass.
                // Vanished since the walk listed it (renamed or deleted meanwhile, like rsync's
                // "file has vanished"), or written to while it was sent, is no error: the
                // change that did it is journaled (through the mount, or by the watcher) and
                // replayed after the pass, which a quick pass then checks. Only a path that
                // is really gone counts as vanished.
                struct stat now;
                const bool raced = r.error().code == EAGAIN ||
                                   (::fstatat(source_, e.path.empty() ? "." : e.path.c_str(), &now,
                                              AT_SYMLINK_NOFOLLOW) != 0 &&
                                    (errno == ENOENT || errno == ENOTDIR));
                if (raced) {
                    spdlog::info("reconcile: '{}' changed in SOURCE during the pass: {}", e.path, r.error().message);
                    ++vanished_;
                } else {
                    spdlog::warn("reconcile: '{}': {}", e.path, r.error().message);
                    ++errors_;
                }
            }
            ++done;
            if (progress && std::chrono::steady_clock::now() - last_progress > std::chrono::seconds(2)) {
                last_progress = std::chrono::steady_clock::now();
                ch_.progress("reconcile: " + std::to_string(done) + "/" + std::to_string(total) + " entries checked, " +
                             std::to_string(changed_) + " changed, " + std::to_string(bytes_) + " bytes sent");
            }
        }
        // Directory attributes last, deepest first: every change inside them is done.
        for (auto it = source_entries_.rbegin(); it != source_entries_.rend(); ++it) {
            if (!S_ISDIR(it->st.st_mode)) continue;
            auto m = mirror_.find(it->path);
            const bool fresh = m == mirror_.end();
            std::uint32_t mask = 0;
            if (fresh || changed_dirs_.count(it->path) || m->second.mtime != ts(it->st.st_mtim)) mask |= proto::kAttrMtime;
            if (!fresh && (m->second.mode & 07777) != (it->st.st_mode & 07777)) mask |= proto::kAttrMode;
            if (!fresh && (m->second.uid != it->st.st_uid || m->second.gid != it->st.st_gid)) {
                mask |= proto::kAttrUid | proto::kAttrGid;
            }
            if (mask == 0) continue;
            if (auto r = ch_.mutate(proto::Setattr{0, it->path, mask, static_cast<std::uint32_t>(it->st.st_mode & 07777),
                                                   it->st.st_uid, it->st.st_gid, 0, ts(it->st.st_atim),
                                                   ts(it->st.st_mtim)});
                !r) {
                return lost(r);
            }
        }
        return doomed.size();
    }

private:
    // For every non-directory in source_entries_ with more hard links than entries, finds
    // its other names by a walk of SOURCE (once per batch, only when such a file is met),
    // lists them on the mirror and appends them to source_entries_/mirror_: sync_entry then
    // links them to the first name, as the whole-tree pass does. Their directories go to
    // out.touched_dirs (a link moves the directory's mtime on the mirror). Error: only a
    // lost connection.
    Result<void> add_other_links(VerifyOutcome& out) {
        using Key = std::pair<std::uint64_t, std::uint64_t>;
        std::map<Key, std::uint64_t> seen;  // (dev, ino) -> names of it in source_entries_
        std::map<Key, nlink_t> nlinks;
        std::set<std::string> present;
        for (const auto& e : source_entries_) {
            present.insert(e.path);
            if (S_ISDIR(e.st.st_mode) || e.st.st_nlink < 2) continue;
            const Key key{static_cast<std::uint64_t>(e.st.st_dev), static_cast<std::uint64_t>(e.st.st_ino)};
            ++seen[key];
            nlinks[key] = e.st.st_nlink;
        }
        std::set<Key> missing;
        for (const auto& [key, n] : seen) {
            if (n < nlinks[key]) missing.insert(key);
        }
        if (missing.empty()) return {};
        if (!whole_source_) {
            whole_source_.emplace();
            std::vector<std::string> unreadable;
            walk(source_, "", excludes_, *whole_source_, unreadable);
        }
        std::vector<SrcEntry> extra;
        for (const auto& e : *whole_source_) {
            if (S_ISDIR(e.st.st_mode) || e.st.st_nlink < 2 || present.count(e.path)) continue;
            const Key key{static_cast<std::uint64_t>(e.st.st_dev), static_cast<std::uint64_t>(e.st.st_ino)};
            if (!missing.count(key)) continue;
            // The walk may be older than this item: take the name only if it still is that file.
            struct stat now;
            if (::fstatat(source_, e.path.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != e.st.st_ino ||
                now.st_dev != e.st.st_dev) {
                continue;
            }
            extra.push_back(SrcEntry{e.path, now, e.target});  // a linked symlink keeps its target
        }
        if (extra.empty()) return {};
        std::vector<std::pair<std::string, std::uint32_t>> req;
        for (const auto& e : extra) req.emplace_back(e.path, xattr_flag());
        auto got = ch_.list_many(req);
        if (!got) return fail(got.error().message, ENOTCONN);
        for (std::size_t i = 0; i < extra.size(); ++i) {
            auto& r = (*got)[i];
            if (r && !r->empty()) mirror_.emplace(extra[i].path, std::move(r->front()));
            out.touched_dirs.push_back(parent_of(extra[i].path));
            source_entries_.push_back(std::move(extra[i]));
        }
        return {};
    }

    static bool under(const std::string& path, const std::string& dir) {
        return dir.empty() || path == dir || (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
    }

    // Drops items that a subtree item of the batch covers, and repeats of a path. Every
    // change of the batch happened before any of it is acted on, so the covering item, which
    // looks at SOURCE later, sees them all.
    static void normalize(std::vector<VerifyItem>& items) {
        std::set<std::string> subtrees;
        for (const auto& it : items) {
            if (it.subtree) subtrees.insert(it.path);
        }
        auto covered_by_other = [&](const VerifyItem& it) {
            for (std::string a = it.path;; a = parent_of(a)) {
                if (a != it.path || !it.subtree) {
                    if (subtrees.count(a)) return true;
                }
                if (a.empty()) return false;
            }
        };
        std::set<std::string> seen;
        std::vector<VerifyItem> out;
        for (auto& it : items) {
            if (covered_by_other(it)) continue;
            if (!seen.insert(it.path).second) continue;
            out.push_back(std::move(it));
        }
        items = std::move(out);
    }

    // A listing of one path: entries, or err (ENOENT/ENOTDIR: the mirror lacks it;
    // ENOTCONN: the connection is gone).
    struct Listed {
        std::vector<proto::ListEntry> entries;
        int err = 0;
        std::string message;
    };
    static Listed to_listed(Result<std::vector<proto::ListEntry>>&& r) {
        Listed l;
        if (r) {
            l.entries = std::move(*r);
        } else {
            l.err = r.error().code == 0 ? EIO : r.error().code;
            l.message = r.error().message;
        }
        return l;
    }
    Listed relist(const std::string& path, bool recursive) {
        auto r = ch_.list_many({{path, (recursive ? std::uint32_t{proto::kListRecursive} : 0u) | xattr_flag()}});
        if (!r) return Listed{{}, ENOTCONN, r.error().message};
        return to_listed(std::move(r->front()));
    }

    static constexpr std::size_t kConnLost = ~std::size_t{0};
    std::size_t lost(const Result<void>& r) {
        conn_lost_ = r.error().message;
        return kConnLost;
    }

    static Result<void> conn_error(const Result<void>& r) {
        return fail(r.error().message, ENOTCONN);
    }

    Result<void> remove(const proto::ListEntry& m) {
        ++changed_;
        if (m.type == proto::NodeType::Directory) return wrap(ch_.mutate(proto::Rmdir{0, m.path}));
        return wrap(ch_.mutate(proto::Unlink{0, m.path}));
    }

    static Result<void> wrap(Result<void> r) { return r ? r : conn_error(r); }

    Result<void> sync_entry(const SrcEntry& e) {
        const struct stat& st = e.st;
        auto m = mirror_.find(e.path);
        const proto::ListEntry* mirror = m == mirror_.end() ? nullptr : &m->second;
        const auto mode = static_cast<std::uint32_t>(st.st_mode & 07777);
        // Hard links (files, and symlinks and special files too, like rsync -H): the second
        // and later names of a source inode are links to the first one.
        if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
            auto key = std::make_pair(static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino));
            auto leader = links_.find(key);
            if (leader != links_.end()) {
                auto lm = mirror_.find(leader->second);
                if (mirror && lm != mirror_.end() && lm->second.ino == mirror->ino && !resent_.count(leader->second)) {
                    return {};
                }
                ++changed_;
                changed_dirs_.insert(parent_of(e.path));  // the link moves its directory's mtime
                return wrap(ch_.mutate(proto::Link{0, e.path, leader->second}));
            }
            links_.emplace(key, e.path);
        }
        switch (st.st_mode & S_IFMT) {
            case S_IFDIR:
                if (e.path.empty()) return {};
                if (!mirror) {
                    ++changed_;
                    changed_dirs_.insert(parent_of(e.path));
                    return wrap(ch_.mutate(proto::Mkdir{0, e.path, mode, st.st_uid, st.st_gid}));
                }
                return {};  // attributes at the end
            case S_IFREG:
                return sync_file(e, mirror);
            case S_IFLNK:
                if (!mirror || mirror->target != e.target || (st.st_nlink == 1 && mirror->nlink > 1)) {
                    ++changed_;
                    changed_dirs_.insert(parent_of(e.path));
                    resent_.insert(e.path);  // a new node: other names are linked to it again
                    if (auto r = ch_.mutate(proto::Symlink{0, e.path, e.target, st.st_uid, st.st_gid}); !r) return wrap(r);
                    return set_times(e);
                }
                if (mirror->mtime != ts(st.st_mtim)) return set_times(e);
                return {};
            default:
                if (!mirror || mirror->rdev != static_cast<std::uint64_t>(st.st_rdev) ||
                    (mirror->mode & 07777) != mode || (st.st_nlink == 1 && mirror->nlink > 1)) {
                    ++changed_;
                    changed_dirs_.insert(parent_of(e.path));
                    resent_.insert(e.path);
                    if (auto r = ch_.mutate(proto::Mknod{0, e.path, static_cast<std::uint32_t>(st.st_mode),
                                                         static_cast<std::uint64_t>(st.st_rdev), st.st_uid, st.st_gid});
                        !r) {
                        return wrap(r);
                    }
                    return set_times(e);
                }
                if (mirror->mtime != ts(st.st_mtim)) return set_times(e);
                return {};
        }
    }

    // Makes the node's extended attributes on the mirror equal to SOURCE's. Files whose
    // content was just sent got them with it (send_xattrs); symlinks carry none on Linux.
    Result<void> sync_xattrs(const SrcEntry& e) {
        if (S_ISLNK(e.st.st_mode) || resent_.count(e.path)) return {};
        auto m = mirror_.find(e.path);
        const proto::ListEntry* mirror = m == mirror_.end() ? nullptr : &m->second;
        if (mirror && (!mirror->xattrs || mirror->type != type_of(e.st.st_mode))) {
            if (!mirror->xattrs) return {};  // the mirror could not read them: leave them be
            mirror = nullptr;                // replaced by a node of SOURCE's type: it has none
        }
        auto source = sys::read_xattrs(source_, e.path.empty() ? "." : e.path);
        if (!source) {
            if (source.error() == ENOENT) return {};  // gone meanwhile: a later record or pass covers it
            return fail("listxattr: " + std::string(std::strerror(source.error())), source.error());
        }
        const proto::XattrSummary ours = proto::summarize_xattrs(*source);
        if (mirror ? ours.digest == mirror->xattrs->digest : source->empty()) return {};
        ++changed_;
        if (mirror) {
            for (const std::string& name : mirror->xattrs->names) {
                if (std::binary_search(ours.names.begin(), ours.names.end(), name)) continue;
                if (auto r = ch_.mutate(proto::Removexattr{0, e.path, name}); !r) return wrap(r);
            }
        }
        return set_xattrs(e.path, *source);
    }

    Result<void> set_times(const SrcEntry& e) {
        return wrap(ch_.mutate(proto::Setattr{0, e.path, proto::kAttrMtime, 0, 0, 0, 0, {}, ts(e.st.st_mtim)}));
    }

    Result<void> sync_file(const SrcEntry& e, const proto::ListEntry* mirror) {
        const struct stat& st = e.st;
        bool same = mirror && mirror->type == proto::NodeType::Regular &&
                    mirror->size == static_cast<std::uint64_t>(st.st_size) && mirror->mtime == ts(st.st_mtim);
        // SOURCE's file has this one name but the mirror's copy is linked to others: a new
        // copy (renamed into place) takes this name out of that group, as rsync -H would.
        if (same && st.st_nlink == 1 && mirror->nlink > 1) same = false;
        if (same && checksum_) {
            auto h = hash_file(e.path);
            if (!h) return std::unexpected(h.error());
            same = mirror->hash && *mirror->hash == *h;
        } else if (same && content_check_ && content_check_(e.path)) {
            // See reconcile_paths(): the mirror's size and mtime may have been stamped over
            // an outside change. One more listing round trip, for this file only.
            auto l = ch_.list_many({{e.path, std::uint32_t{proto::kListChecksums}}});
            if (!l) return fail(l.error().message, ENOTCONN);
            const auto& one = l->front();
            auto h = hash_file(e.path);
            if (!h) return std::unexpected(h.error());
            same = one && !one->empty() && one->front().hash && *one->front().hash == *h;
            if (!same) spdlog::info("outside change '{}': same size and mtime on the mirror, other content", e.path);
        }
        if (same) {
            std::uint32_t mask = 0;
            if ((mirror->mode & 07777) != (st.st_mode & 07777)) mask |= proto::kAttrMode;
            if (mirror->uid != st.st_uid || mirror->gid != st.st_gid) mask |= proto::kAttrUid | proto::kAttrGid;
            if (mask == 0) return {};
            ++changed_;
            return wrap(ch_.mutate(proto::Setattr{0, e.path, mask, static_cast<std::uint32_t>(st.st_mode & 07777),
                                                  st.st_uid, st.st_gid, 0, {}, {}}));
        }
        ++changed_;
        resent_.insert(e.path);
        changed_dirs_.insert(parent_of(e.path));  // the temp file's rename touches it
        const bool delta = mirror && mirror->type == proto::NodeType::Regular && mirror->size >= kDeltaMinSize &&
                           static_cast<std::uint64_t>(st.st_size) >= kDeltaMinSize;
        if (auto r = send_content(e, delta); !r) return r;
        return send_xattrs(e.path);
    }

    Result<proto::Hash128> hash_file(const std::string& path) {
        UniqueFd fd(::openat(source_, path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) return fail("open: " + std::string(std::strerror(errno)), errno);
        proto::ContentHasher hasher;
        std::vector<char> buf(1 << 20);
        for (;;) {
            ssize_t n = ::read(fd.get(), buf.data(), buf.size());
            if (n < 0) return fail("read: " + std::string(std::strerror(errno)), errno);
            if (n == 0) break;
            hasher.update(buf.data(), static_cast<std::size_t>(n));
        }
        return hasher.digest();
    }

    // ContentBegin, chunks (literal bytes or a librsync delta against the mirror's copy),
    // Commit with the XXH3-128 of what was read. A file that changes size while it is read
    // is aborted: its journal records bring it over later.
    Result<void> send_content(const SrcEntry& e, bool delta) {
        UniqueFd fd(::openat(source_, e.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) return fail("open: " + std::string(std::strerror(errno)), errno);
        struct stat st;
        if (::fstat(fd.get(), &st) != 0) return fail("fstat: " + std::string(std::strerror(errno)), errno);
        std::vector<std::uint8_t> sig;
        if (delta) {
            auto s = ch_.signature(e.path);
            if (!s) {
                if (s.error().code == 0 || s.error().code == ENOTCONN) return fail(s.error().message, ENOTCONN);
                delta = false;  // the mirror's copy went away: literal
            } else {
                sig = std::move(*s);
            }
        }
        const std::uint64_t seq = ch_.next_seq();
        proto::ContentBegin begin{seq,
                                  e.path,
                                  delta ? proto::ContentEncoding::Delta : proto::ContentEncoding::Literal,
                                  static_cast<std::uint32_t>(st.st_mode & 07777),
                                  st.st_uid,
                                  st.st_gid,
                                  static_cast<std::uint64_t>(st.st_size),
                                  ts(st.st_atim),
                                  ts(st.st_mtim)};
        if (auto r = ch_.send(begin); !r) return wrap(r);
        proto::ContentHasher hasher;
        std::uint64_t read_total = 0;
        auto reader = [&](char* buf, std::size_t n) -> ssize_t {
            ssize_t got = ::read(fd.get(), buf, n);
            if (got > 0) {
                hasher.update(buf, static_cast<std::size_t>(got));
                read_total += static_cast<std::uint64_t>(got);
            }
            return got;
        };
        auto sender = [&](const char* data, std::size_t n) -> Result<void> {
            bytes_ += n;
            std::vector<std::uint8_t> v(data, data + n);
            return wrap(ch_.send(proto::ContentChunk{seq, std::move(v)}));
        };
        Result<void> r;
        if (delta) {
            rs_signature_t* sigp = nullptr;
            rs_job_t* load = rs_loadsig_begin(&sigp);
            std::size_t sig_pos = 0;
            r = pump(
                load,
                [&](char* buf, std::size_t n) -> ssize_t {
                    std::size_t k = std::min(n, sig.size() - sig_pos);
                    std::memcpy(buf, sig.data() + sig_pos, k);
                    sig_pos += k;
                    return static_cast<ssize_t>(k);
                },
                [](const char*, std::size_t) -> Result<void> { return {}; });
            rs_job_free(load);
            if (r && rs_build_hash_table(sigp) != RS_DONE) r = fail("librsync: cannot index the mirror's signature");
            if (r) {
                rs_job_t* job = rs_delta_begin(sigp);
                r = pump(job, reader, sender);
                rs_job_free(job);
            }
            if (sigp) rs_free_sumset(sigp);
        } else {
            std::vector<char> buf(proto::kMaxChunk);
            for (;;) {
                ssize_t n = reader(buf.data(), buf.size());
                if (n < 0) {
                    r = fail("read: " + std::string(std::strerror(errno)), errno);
                    break;
                }
                if (n == 0) break;
                if (r = sender(buf.data(), static_cast<std::size_t>(n)); !r) break;
            }
        }
        // EAGAIN marks the race with a writer (see the pass loop), not a failure to read.
        if (r && read_total != static_cast<std::uint64_t>(st.st_size)) r = fail("changed while being read", EAGAIN);
        if (!r) {
            if (r.error().code == ENOTCONN) return r;
            if (auto a = ch_.send(proto::ContentAbort{seq}); !a) return wrap(a);
            return r;
        }
        return wrap(ch_.send(proto::ContentCommit{seq, hasher.digest()}));
    }

    // Sets every extended attribute of SOURCE's `path` on the mirror (its content was just
    // sent as a new file, which has none). Unreadable ones are left to a later change or pass.
    Result<void> send_xattrs(const std::string& path) {
        auto xattrs = sys::read_xattrs(source_, path);
        if (!xattrs) return {};
        return set_xattrs(path, *xattrs);
    }

    Result<void> set_xattrs(const std::string& path, const sys::XattrList& xattrs) {
        for (const auto& [name, value] : xattrs) {
            if (value.size() > proto::kMaxXattrValue) continue;
            if (auto r = ch_.mutate(proto::Setxattr{0, path, name, value}); !r) return wrap(r);
        }
        return {};
    }

    MirrorChannel& ch_;
    const int source_;
    const std::vector<std::string>& excludes_;
    const bool checksum_;
    const bool xattrs_;
    std::function<bool(const std::string&)> content_check_;  // reconcile_paths() only
    std::map<std::string, proto::ListEntry> mirror_;
    std::vector<SrcEntry> source_entries_;
    std::set<std::string> changed_dirs_;
    std::set<std::string> resent_;
    std::map<std::pair<std::uint64_t, std::uint64_t>, std::string> links_;
    std::optional<std::vector<SrcEntry>> whole_source_;  // run_paths: SOURCE walked for hard links
    std::uint64_t changed_ = 0, bytes_ = 0, errors_ = 0;
    std::uint64_t vanished_ = 0;  // entries renamed, deleted or written to while the pass ran
    std::string conn_lost_;
};

}  // namespace

bool excluded(const std::vector<std::string>& patterns, const std::string& path) {
    if (path.empty() || patterns.empty()) return false;
    // The path and each of its parents: a pattern that matches a directory excludes its subtree.
    for (std::size_t end = path.find('/');; end = path.find('/', end + 1)) {
        const std::string prefix = end == std::string::npos ? path : path.substr(0, end);
        const auto slash = prefix.rfind('/');
        const std::string name = slash == std::string::npos ? prefix : prefix.substr(slash + 1);
        for (const auto& p : patterns) {
            // Like rsync: a pattern with a '/' matches the path from the root, otherwise the name.
            if (p.find('/') != std::string::npos) {
                const std::string pat = p.front() == '/' ? p.substr(1) : p;
                if (::fnmatch(pat.c_str(), prefix.c_str(), FNM_PATHNAME) == 0) return true;
            } else if (::fnmatch(p.c_str(), name.c_str(), 0) == 0) {
                return true;
            }
        }
        if (end == std::string::npos) return false;
    }
}

Result<void> reconcile_tree(MirrorChannel& channel, int source_dirfd, const std::vector<std::string>& excludes,
                            bool checksum, bool xattrs) {
    Reconciler r(channel, source_dirfd, excludes, checksum, xattrs);
    return r.run();
}

Result<VerifyOutcome> reconcile_paths(MirrorChannel& channel, int source_dirfd, const std::vector<std::string>& excludes,
                                      std::vector<VerifyItem> items, bool xattrs,
                                      const std::function<bool(const std::string&)>& content_check) {
    Reconciler r(channel, source_dirfd, excludes, false, xattrs);
    r.set_content_check(content_check);
    return r.run_paths(std::move(items));
}

}  // namespace sfs::repl
