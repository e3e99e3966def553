// The receiving side of a push: file list reception, the generator (deletions, directories,
// symlinks, devices, block sums of each basis) and the receiver (tokens applied against the
// basis into a temp file, whole-file MD4 verified, renamed into place).
//
// Design: rsync forks the generator and the receiver; we run the generator on its own thread
// and the receiver on the session thread. The generator only writes to the client, the
// receiver only reads from it, so neither can block the other (the client's sender reads and
// writes concurrently). The receiver tells the generator about redo requests and phase ends
// through RecvEvents. Protocol 27 has two phases: 0 (short 2-byte block sums) and 1 (redo of
// files whose checksum failed, with full 16-byte sums). See generator.c generate_files and
// receiver.c recv_files.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "protocol/rsync_match.h"
#include "server/rsync/context.h"

namespace sfs::server::rsync {

namespace {

using protocol::FileEntry;

constexpr const char* kMungePrefix = "/rsyncd-munged/";

struct RecvEvent {
    enum Kind { redo, phase_done, failed } kind;
    std::int32_t ndx = 0;
};

class RecvEvents {
public:
    void push(RecvEvent e) {
        std::lock_guard l(mu_);
        q_.push_back(e);
        cv_.notify_one();
    }
    RecvEvent pop() {
        std::unique_lock l(mu_);
        cv_.wait(l, [&] { return !q_.empty(); });
        RecvEvent e = q_.front();
        q_.pop_front();
        return e;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<RecvEvent> q_;
};

class Mapping {
public:
    Mapping() = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() { reset(); }
    bool map(int fd, std::size_t len) {
        reset();
        len_ = len;
        if (len == 0) return true;
        void* p = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) return false;
        p_ = p;
        return true;
    }
    void reset() {
        if (p_) munmap(p_, len_);
        p_ = nullptr;
        len_ = 0;
    }
    const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(p_); }
    std::size_t size() const { return len_; }

private:
    void* p_ = nullptr;
    std::size_t len_ = 0;
};

std::string errstr(int e) { return std::string(std::strerror(e)) + " (" + std::to_string(e) + ")"; }

struct Receiving {
    explicit Receiving(Context& c) : ctx(c) {}
    Context& ctx;
    std::vector<FileEntry> list;
    std::string dest;          // module-relative destination dir ("." = root)
    std::string local_name;    // single-file transfer to a new name
    std::int32_t sender_io_error = 0;
    std::map<std::int32_t, std::int32_t> hlink_leader;   // follower ndx -> leader ndx
    RecvEvents events;
    std::atomic<bool> abort{false};
    mode_t umask_bits = 022;

    std::string path_of(const FileEntry& e) const {
        if (!local_name.empty()) return local_name;
        return join_path(dest, e.name);
    }

    const ServerOptions& o() const { return ctx.opt; }
    bool am_root() const { return ctx.module->am_root; }

    // ---- attributes ----------------------------------------------------------------
    mode_t new_mode(const FileEntry& e, bool exists, mode_t cur) const {
        if (o().perms) return e.mode & 07777;
        if (exists) return cur & 07777;
        mode_t m = (e.mode & 0777) & ~umask_bits;
        if (o().executability && (e.mode & 0111)) m |= (0111 & ~umask_bits);
        return m;
    }

    void set_fd_attrs(int fd, const FileEntry& e, bool exists, mode_t cur) {
        if (am_root() && (o().owner || o().group)) {
            uid_t u = o().owner ? e.uid : static_cast<uid_t>(-1);
            gid_t g = o().group ? e.gid : static_cast<gid_t>(-1);
            if (fchown(fd, u, g) < 0)
                ctx.error("rsync: chown \"" + path_of(e) + "\" failed: " + errstr(errno));
        }
        if (fchmod(fd, new_mode(e, exists, cur)) < 0)
            ctx.error("rsync: chmod \"" + path_of(e) + "\" failed: " + errstr(errno));
        if (o().times) {
            struct timespec ts[2];
            ts[0].tv_sec = 0;
            ts[0].tv_nsec = UTIME_OMIT;
            ts[1].tv_sec = static_cast<time_t>(e.mtime);
            ts[1].tv_nsec = 0;
            if (futimens(fd, ts) < 0)
                ctx.error("rsync: failed to set times on \"" + path_of(e) + "\": " + errstr(errno));
        }
    }

    // Attributes on an existing entry by path (dirs at the end, up-to-date files, symlinks).
    void set_path_attrs(const std::string& path, const FileEntry& e, bool is_link) {
        std::string base;
        auto dir = ctx.root.open_parent(path, base);
        if (!dir) return;
        const char* name = base == "." ? "" : base.c_str();
        int empty = base == "." ? AT_EMPTY_PATH : 0;
        if (am_root() && (o().owner || o().group)) {
            uid_t u = o().owner ? e.uid : static_cast<uid_t>(-1);
            gid_t g = o().group ? e.gid : static_cast<gid_t>(-1);
            if (fchownat(dir->get(), name, u, g, AT_SYMLINK_NOFOLLOW | empty) < 0)
                ctx.error("rsync: chown \"" + path + "\" failed: " + errstr(errno));
        }
        if (is_link) return;
        struct stat st {};
        if (fstatat(dir->get(), name, &st, AT_SYMLINK_NOFOLLOW | empty) < 0) return;
        mode_t want = new_mode(e, true, st.st_mode);
        if (o().perms && (st.st_mode & 07777) != want) {
            // fchmodat cannot refuse symlinks portably; open the entry itself instead.
            auto fd = ctx.root.open_beneath(path, O_PATH | O_NOFOLLOW);
            if (fd) {
                std::string proc = "/proc/self/fd/" + std::to_string(fd->get());
                if (::chmod(proc.c_str(), want) < 0)
                    ctx.error("rsync: chmod \"" + path + "\" failed: " + errstr(errno));
            }
        }
        if (o().times && !(S_ISDIR(e.mode) && o().omit_dir_times) && st.st_mtime != e.mtime) {
            struct timespec ts[2];
            ts[0].tv_nsec = UTIME_OMIT;
            ts[0].tv_sec = 0;
            ts[1].tv_sec = static_cast<time_t>(e.mtime);
            ts[1].tv_nsec = 0;
            if (utimensat(dir->get(), name, ts, AT_SYMLINK_NOFOLLOW | empty) < 0)
                ctx.error("rsync: failed to set times on \"" + path + "\": " + errstr(errno));
        }
    }

    // ---- deletion ------------------------------------------------------------------
    // Removes `path` (a directory recursively). Returns false on error.
    bool remove_tree(int parent, const std::string& name, const std::string& shown) {
        struct stat st {};
        if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT;
        if (S_ISDIR(st.st_mode)) {
            int fd = openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) return false;
            DIR* d = fdopendir(fd);
            if (!d) {
                ::close(fd);
                return false;
            }
            std::vector<std::string> names;
            while (dirent* de = readdir(d)) {
                std::string n = de->d_name;
                if (n != "." && n != "..") names.push_back(n);
            }
            bool ok = true;
            for (const auto& n : names) ok = remove_tree(dirfd(d), n, shown + "/" + n) && ok;
            closedir(d);
            if (!ok) return false;
            if (unlinkat(parent, name.c_str(), AT_REMOVEDIR) < 0) {
                ctx.error("rsync: delete_file: rmdir \"" + shown + "\" failed: " + errstr(errno));
                return false;
            }
            return true;
        }
        if (unlinkat(parent, name.c_str(), 0) < 0) {
            ctx.error("rsync: delete_file: unlink \"" + shown + "\" failed: " + errstr(errno));
            return false;
        }
        return true;
    }

    int deletions = 0;

    // delete_in_dir() for every directory of the list (delete-before, as protocol 27 does).
    void delete_pass() {
        if (!o().delete_mode || !o().recurse || !local_name.empty()) return;
        if (sender_io_error && !o().ignore_errors && !ctx.module->ignore_errors) {
            ctx.error("IO error encountered -- skipping file deletion");
            return;
        }
        std::set<std::string> names;
        for (const auto& e : list)
            if (e.active) names.insert(e.name);
        for (const auto& e : list) {
            if (!e.active || !S_ISDIR(e.mode)) continue;
            std::string local = join_path(dest, e.name);
            auto fd = ctx.root.open_beneath(local, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (!fd) continue;
            int dfd = fd->release();
            DIR* d = fdopendir(dfd);
            if (!d) {
                ::close(dfd);
                continue;
            }
            std::vector<std::pair<std::string, bool>> doomed;
            while (dirent* de = readdir(d)) {
                std::string n = de->d_name;
                if (n == "." || n == "..") continue;
                std::string wire = e.name == "." ? n : e.name + "/" + n;
                if (names.contains(wire)) continue;
                struct stat st {};
                if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
                bool is_dir = S_ISDIR(st.st_mode);
                if (!o().delete_excluded && ctx.filters.excluded(wire, is_dir)) continue;
                doomed.emplace_back(n, is_dir);
            }
            for (const auto& [n, is_dir] : doomed) {
                std::string wire = e.name == "." ? n : e.name + "/" + n;
                if (o().max_delete >= 0 && deletions >= o().max_delete) {
                    ctx.info("Deletions stopped due to --max-delete limit");
                    break;
                }
                ++deletions;
                if (o().verbose) ctx.info("deleting " + wire + (is_dir ? "/" : ""));
                if (!o().dry_run) remove_tree(dirfd(d), n, join_path(dest, wire));
            }
            closedir(d);
        }
    }

    // ---- generator -----------------------------------------------------------------
    // Makes room for a new entry of type `mode` at `path`: removes what is there when its
    // type differs. Returns the existing stat (if kept) through `st`.
    bool make_room(const std::string& path, mode_t mode, struct stat& st, bool& exists) {
        auto cur = ctx.root.lstat(path);
        exists = static_cast<bool>(cur);
        if (!exists) return true;
        st = *cur;
        if ((st.st_mode & S_IFMT) == (mode & S_IFMT)) return true;
        if (o().dry_run) {
            exists = false;
            return true;
        }
        if (S_ISDIR(st.st_mode) && !(o().delete_mode || o().force)) {
            ctx.error("rsync: cannot replace directory \"" + path + "\" with a non-directory (use --delete or --force)");
            return false;
        }
        std::string base;
        auto dir = ctx.root.open_parent(path, base);
        if (!dir || !remove_tree(dir->get(), base, path)) return false;
        exists = false;
        return true;
    }

    std::vector<std::size_t> dirs_made;

    void gen_dir(const FileEntry& e) {
        std::string path = path_of(e);
        struct stat st {};
        bool exists = false;
        if (!make_room(path, e.mode, st, exists)) return;
        if (!exists && !o().dry_run) {
            std::string base;
            auto dir = ctx.root.open_parent(path, base);
            if (!dir) {
                ctx.error("rsync: mkdir \"" + path + "\" (in " + ctx.module->name + ") failed: " + errstr(dir.error()));
                return;
            }
            if (mkdirat(dir->get(), base.c_str(), 0700) < 0 && errno != EEXIST) {
                ctx.error("rsync: mkdir \"" + path + "\" (in " + ctx.module->name + ") failed: " + errstr(errno));
                return;
            }
        }
    }

    void gen_symlink(const FileEntry& e) {
        if (!o().links) return;
        std::string path = path_of(e);
        std::string target = e.link_target;
        if (ctx.module->munge_symlinks) target = kMungePrefix + target;
        struct stat st {};
        bool exists = false;
        if (!make_room(path, e.mode, st, exists)) return;
        std::string base;
        auto dir = ctx.root.open_parent(path, base);
        if (!dir) return;
        if (exists) {
            std::string cur(4096, '\0');
            ssize_t n = readlinkat(dir->get(), base.c_str(), cur.data(), cur.size());
            if (n >= 0 && std::string_view(cur.data(), static_cast<std::size_t>(n)) == target) {
                if (!o().dry_run) set_path_attrs(path, e, true);
                return;
            }
        }
        if (o().verbose && !o().dry_run) {}
        if (o().dry_run) return;
        // Create under a temp name, then rename over the old entry.
        std::string tmp = "." + base + ".symlink." + std::to_string(::getpid());
        unlinkat(dir->get(), tmp.c_str(), 0);
        if (symlinkat(target.c_str(), dir->get(), tmp.c_str()) < 0 ||
            renameat(dir->get(), tmp.c_str(), dir->get(), base.c_str()) < 0) {
            ctx.error("rsync: symlink \"" + path + "\" -> \"" + target + "\" failed: " + errstr(errno));
            unlinkat(dir->get(), tmp.c_str(), 0);
            return;
        }
        set_path_attrs(path, e, true);
    }

    void gen_device(const FileEntry& e) {
        bool dev = protocol::is_device(e.mode);
        if (dev ? !o().devices : !o().specials) return;
        std::string path = path_of(e);
        if (dev && !am_root()) {
            ctx.info("skipping device \"" + path + "\" (server is not running as root)");
            return;
        }
        struct stat st {};
        bool exists = false;
        if (!make_room(path, e.mode, st, exists)) return;
        if (exists && (!dev || st.st_rdev == static_cast<dev_t>(e.rdev))) {
            if (!o().dry_run) set_path_attrs(path, e, false);
            return;
        }
        if (o().dry_run) return;
        std::string base;
        auto dir = ctx.root.open_parent(path, base);
        if (!dir) return;
        if (exists) unlinkat(dir->get(), base.c_str(), 0);
        // The wire rdev below 28 is the sender's dev_t truncated to 32 bits (Linux encoding).
        dev_t rdev = makedev(major(e.rdev), minor(e.rdev));
        if (mknodat(dir->get(), base.c_str(), (e.mode & S_IFMT) | 0600, dev ? rdev : 0) < 0) {
            ctx.error("rsync: mknod \"" + path + "\" failed: " + errstr(errno));
            return;
        }
        set_path_attrs(path, e, false);
    }

    // unchanged_file() + quick_check_ok(): true when the file needs no transfer.
    bool up_to_date(const std::string& path, const FileEntry& e, const struct stat& st) {
        if (!S_ISREG(st.st_mode)) return false;
        if (o().checksum) {
            if (st.st_size != e.size) return false;
            auto fd = ctx.root.open_beneath(path, O_RDONLY | O_NOFOLLOW);
            if (!fd) return false;
            protocol::Md4 m;
            std::string buf(256 * 1024, '\0');
            for (;;) {
                ssize_t n = ::read(fd->get(), buf.data(), buf.size());
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                m.update(buf.data(), static_cast<std::size_t>(n));
            }
            return m.finish() == e.sum;
        }
        if (st.st_size != e.size) return false;
        if (o().size_only) return true;
        if (o().ignore_times) return false;
        return st.st_mtime == e.mtime;
    }

    // recv_generator() for a regular file: request it (index + block sums) or fix attrs.
    Result<void> gen_file(std::int32_t ndx, bool redo_pass) {
        const FileEntry& e = list[static_cast<std::size_t>(ndx)];
        std::string path = path_of(e);
        struct stat st {};
        bool exists = false;
        if (!redo_pass) {
            if (hlink_leader.contains(ndx)) return {};   // linked to its leader at the end
            if (!make_room(path, e.mode, st, exists)) return {};
            if (o().existing && !exists) return {};
            if (o().ignore_existing && exists) return {};
            if (exists && o().update_only && st.st_mtime > e.mtime) return {};
            if (exists && up_to_date(path, e, st)) {
                if (!o().dry_run) set_path_attrs(path, e, false);
                return {};
            }
        } else {
            auto cur = ctx.root.lstat(path);
            exists = cur && S_ISREG(cur->st_mode);
        }
        std::string msg;
        protocol::put_i32(msg, ndx);
        if (o().dry_run) return ctx.out->write(msg);
        // The basis: the current file unless --whole-file.
        protocol::SumHead head;
        Mapping map;
        UniqueFd fd;
        if (exists && !o().whole_file) {
            auto f = ctx.root.open_beneath(path, O_RDONLY | O_NOFOLLOW);
            struct stat bst {};
            if (f && fstat(f->get(), &bst) == 0 && S_ISREG(bst.st_mode) && bst.st_size > 0 &&
                map.map(f->get(), static_cast<std::size_t>(bst.st_size))) {
                head = protocol::sum_sizes_sqroot(bst.st_size, ctx.protocol,
                                                  redo_pass ? protocol::kSumLength : protocol::kShortSumLength,
                                                  o().block_size);
                fd = std::move(*f);
            }
        }
        if (head.count > 0) {
            protocol::write_sums(msg, head, map.data(), static_cast<std::int64_t>(map.size()), ctx.seed);
        } else {
            protocol::write_sum_head(msg, protocol::SumHead{});
        }
        return ctx.out->write(msg);
    }

    Result<void> generate() {
        delete_pass();
        for (std::size_t i = 0; i < list.size(); ++i) {
            const FileEntry& e = list[i];
            if (!e.active) continue;
            if (abort.load()) return fail("transfer aborted");
            if (S_ISDIR(e.mode)) {
                gen_dir(e);
                dirs_made.push_back(i);
            } else if (S_ISLNK(e.mode)) {
                gen_symlink(e);
            } else if (S_ISREG(e.mode)) {
                if (auto r = gen_file(static_cast<std::int32_t>(i), false); !r) return r;
            } else {
                gen_device(e);
            }
        }
        if (auto r = ctx.out->write_i32(-1); !r) return r;
        if (auto r = ctx.out->flush(); !r) return r;
        // Phase 1: redo requests until the receiver finished phase 0.
        for (;;) {
            RecvEvent ev = events.pop();
            if (ev.kind == RecvEvent::failed) return fail("receiver failed");
            if (ev.kind == RecvEvent::phase_done) break;
            if (auto r = gen_file(ev.ndx, true); !r) return r;
            if (auto r = ctx.out->flush(); !r) return r;
        }
        if (auto r = ctx.out->write_i32(-1); !r) return r;
        if (auto r = ctx.out->flush(); !r) return r;
        RecvEvent ev = events.pop();
        if (ev.kind == RecvEvent::failed) return fail("receiver failed");
        if (!o().dry_run) {
            link_hardlinks();
            // touch_up_dirs(): final permissions and times, after all contents changed.
            for (auto it = dirs_made.rbegin(); it != dirs_made.rend(); ++it) {
                const FileEntry& e = list[*it];
                set_path_attrs(path_of(e), e, false);
            }
        }
        // Final goodbye.
        if (auto r = ctx.out->write_i32(-1); !r) return r;
        return ctx.out->flush();
    }

    // -H: group regular files by the sender's (dev, ino); the first in list order carries
    // the data, the others become links to it (hlink.c, protocol < 30).
    void plan_hardlinks() {
        if (!o().hard_links) return;
        std::map<std::pair<std::int64_t, std::int64_t>, std::int32_t> first;
        for (std::size_t i = 0; i < list.size(); ++i) {
            const FileEntry& e = list[i];
            if (!e.active || !S_ISREG(e.mode) || e.dev < 0) continue;
            auto [it, inserted] = first.emplace(std::make_pair(e.dev, e.ino), static_cast<std::int32_t>(i));
            if (!inserted) hlink_leader[static_cast<std::int32_t>(i)] = it->second;
        }
    }

    void link_hardlinks() {
        for (const auto& [f, l] : hlink_leader) {
            std::string fp = path_of(list[static_cast<std::size_t>(f)]);
            std::string lp = path_of(list[static_cast<std::size_t>(l)]);
            auto ls = ctx.root.lstat(lp);
            if (!ls || !S_ISREG(ls->st_mode)) continue;
            auto fs = ctx.root.lstat(fp);
            if (fs && fs->st_ino == ls->st_ino && fs->st_dev == ls->st_dev) continue;
            std::string lbase, fbase;
            auto ldir = ctx.root.open_parent(lp, lbase);
            auto fdir = ctx.root.open_parent(fp, fbase);
            if (!ldir || !fdir) continue;
            if (fs && S_ISDIR(fs->st_mode)) continue;
            std::string tmp = "." + fbase + ".hlink." + std::to_string(::getpid());
            unlinkat(fdir->get(), tmp.c_str(), 0);
            if (linkat(ldir->get(), lbase.c_str(), fdir->get(), tmp.c_str(), 0) < 0 ||
                renameat(fdir->get(), tmp.c_str(), fdir->get(), fbase.c_str()) < 0) {
                ctx.error("rsync: link \"" + fp + "\" => " + lp + " failed: " + errstr(errno));
                unlinkat(fdir->get(), tmp.c_str(), 0);
            } else if (o().verbose) {
                ctx.info(list[static_cast<std::size_t>(f)].name + " => " + list[static_cast<std::size_t>(l)].name);
            }
        }
    }

    // ---- receiver ------------------------------------------------------------------
    // receive_data() + finish_transfer() for one file. `ok` false: checksum mismatch.
    Result<void> receive_file(std::int32_t ndx, int phase, bool& ok) {
        const FileEntry& e = list[static_cast<std::size_t>(ndx)];
        std::string path = path_of(e);
        // The sender echoes our sum head (not the block sums) before the tokens.
        auto head = protocol::read_sum_head(*ctx.in, 1 << 22);
        if (!head) return std::unexpected(head.error());
        const protocol::SumHead& h = *head;
        std::string base;
        auto dir = ctx.root.open_parent(path, base);
        // Basis.
        Mapping basis;
        UniqueFd basis_fd;
        bool exists = false;
        struct stat bst {};
        if (dir && fstatat(dir->get(), base.c_str(), &bst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(bst.st_mode))
            exists = true;
        if (exists && h.count > 0) {
            int f = openat(dir->get(), base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (f >= 0) {
                basis_fd.reset(f);
                struct stat s2 {};
                if (fstat(f, &s2) == 0) basis.map(f, static_cast<std::size_t>(s2.st_size));
            }
        }
        // Output.
        UniqueFd out;
        std::string tmp;
        bool inplace = o().inplace;
        if (dir) {
            if (inplace) {
                int f = openat(dir->get(), base.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (f >= 0) out.reset(f);
            } else {
                static thread_local std::mt19937 rng{std::random_device{}()};
                for (int tries = 0; tries < 100 && !out; ++tries) {
                    char suffix[8];
                    std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(rng() & 0xFFFFFF));
                    tmp = "." + base.substr(0, 200) + "." + suffix;
                    int f = openat(dir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                    if (f >= 0) out.reset(f);
                    else if (errno != EEXIST) break;
                }
            }
        }
        int open_err = errno;
        if (!out) {
            ctx.error("rsync: open \"" + path + "\" (in " + ctx.module->name + ") failed: " +
                      (dir ? errstr(open_err) : errstr(dir.error())));
        }
        protocol::TokenReader tokens(*ctx.in, o().compress, ctx.protocol);
        protocol::Md4 sum = protocol::file_transfer_sum(ctx.seed);
        std::int64_t offset = 0;
        bool write_failed = !out;
        auto put = [&](const std::uint8_t* p, std::size_t n) {
            sum.update(p, n);
            if (write_failed) return;
            std::size_t done = 0;
            while (done < n) {
                ssize_t w = pwrite(out.get(), p + done, n - done, offset + static_cast<std::int64_t>(done));
                if (w < 0) {
                    if (errno == EINTR) continue;
                    ctx.error("rsync: write failed on \"" + path + "\" (in " + ctx.module->name + "): " + errstr(errno));
                    write_failed = true;
                    return;
                }
                done += static_cast<std::size_t>(w);
            }
        };
        Result<void> stream_ok;
        for (;;) {
            auto t = tokens.next();
            if (!t) {
                stream_ok = std::unexpected(t.error());
                break;
            }
            if (t->kind == protocol::Token::end) break;
            if (t->kind == protocol::Token::literal) {
                put(reinterpret_cast<const std::uint8_t*>(t->data.data()), t->data.size());
                offset += static_cast<std::int64_t>(t->data.size());
                ctx.stats.bytes_read += 0;
                continue;
            }
            std::int32_t i = t->index;
            if (i < 0 || i >= h.count) {
                stream_ok = fail("protocol error: block index " + std::to_string(i) + " out of range (" +
                                 std::to_string(h.count) + " blocks) for " + path);
                break;
            }
            std::int64_t boff = static_cast<std::int64_t>(i) * h.blength;
            std::int64_t blen = (i == h.count - 1 && h.remainder) ? h.remainder : h.blength;
            if (!basis.data() || boff + blen > static_cast<std::int64_t>(basis.size())) {
                stream_ok = fail("rsync: basis file of \"" + path + "\" changed during the transfer");
                break;
            }
            const std::uint8_t* bp = basis.data() + boff;
            if (auto r = tokens.see_block(bp, static_cast<std::size_t>(blen)); !r) {
                stream_ok = r;
                break;
            }
            put(bp, static_cast<std::size_t>(blen));
            offset += blen;
        }
        auto cleanup_tmp = [&] {
            if (!tmp.empty() && dir) unlinkat(dir->get(), tmp.c_str(), 0);
        };
        if (!stream_ok) {
            // Connection or stream failure mid-file: --partial keeps what arrived.
            if (o().partial && !inplace && out && !tmp.empty() && dir && offset > 0) {
                renameat(dir->get(), tmp.c_str(), dir->get(), base.c_str());
            } else {
                cleanup_tmp();
            }
            return std::unexpected(stream_ok.error());
        }
        protocol::Digest remote{};
        if (auto r = ctx.in->read_exact(remote.data(), remote.size()); !r) {
            if (o().partial && !inplace && out && !tmp.empty() && dir && offset > 0)
                renameat(dir->get(), tmp.c_str(), dir->get(), base.c_str());
            else
                cleanup_tmp();
            return r;
        }
        protocol::Digest local = sum.finish();
        ok = local == remote;
        if (write_failed) {
            cleanup_tmp();
            return {};
        }
        if (inplace && ftruncate(out.get(), offset) < 0)
            ctx.error("rsync: ftruncate \"" + path + "\" failed: " + errstr(errno));
        if (!ok) {
            if (phase == 0) {
                ctx.info("WARNING: " + path + " failed verification -- update " +
                         (inplace ? "retained" : "discarded") + " (will try again).");
            } else {
                ctx.error("ERROR: " + path + " failed verification -- update discarded.");
            }
            cleanup_tmp();
            return {};
        }
        set_fd_attrs(out.get(), e, exists, bst.st_mode);
        if (!inplace) {
            if (renameat(dir->get(), tmp.c_str(), dir->get(), base.c_str()) < 0) {
                ctx.error("rsync: rename \"" + tmp + "\" -> \"" + path + "\": " + errstr(errno));
                cleanup_tmp();
            }
        }
        ++ctx.stats.files_transferred;
        return {};
    }

    Result<void> receive() {
        int phase = 0;
        for (;;) {
            auto ndx = ctx.in->read_i32();
            if (!ndx) return std::unexpected(ndx.error());
            if (*ndx == -1) {
                ++phase;
                events.push({RecvEvent::phase_done, 0});
                if (phase > 1) return {};
                continue;
            }
            if (*ndx < 0 || static_cast<std::size_t>(*ndx) >= list.size())
                return fail("protocol error: invalid file index " + std::to_string(*ndx) + " from " + ctx.peer);
            const FileEntry& e = list[static_cast<std::size_t>(*ndx)];
            if (!e.active || !S_ISREG(e.mode))
                return fail("protocol error: transfer of index " + std::to_string(*ndx) + " (" + e.name +
                            ") which is not a regular file");
            if (o().dry_run) {
                ++ctx.stats.files_transferred;
                continue;
            }
            bool ok = true;
            if (auto r = receive_file(*ndx, phase, ok); !r) return r;
            if (!ok && phase == 0) events.push({RecvEvent::redo, *ndx});
        }
    }
};

// get_local_name(): where the list lands.
void choose_destination(Receiving& r, std::string dest_arg) {
    Context& ctx = r.ctx;
    bool trailing = !dest_arg.empty() && dest_arg.back() == '/';
    while (!dest_arg.empty() && dest_arg.back() == '/') dest_arg.pop_back();
    if (dest_arg.empty()) dest_arg = ".";
    std::size_t active = 0;
    const FileEntry* only = nullptr;
    for (const auto& e : r.list)
        if (e.active) {
            ++active;
            only = &e;
        }
    auto st = ctx.root.lstat(dest_arg);
    if (st && S_ISDIR(st->st_mode)) {
        r.dest = dest_arg;
        return;
    }
    if (active == 1 && !S_ISDIR(only->mode) && !trailing && dest_arg != ".") {
        r.local_name = dest_arg;
        return;
    }
    r.dest = dest_arg;
    if (!ctx.opt.dry_run && !st) {
        std::string base;
        auto dir = ctx.root.open_parent(dest_arg, base);
        if (dir && mkdirat(dir->get(), base.c_str(), 0755) == 0 && ctx.opt.verbose)
            ctx.info("created directory " + dest_arg);
    }
}

}  // namespace

Result<void> run_receiver(Context& ctx) {
    const ServerOptions& o = ctx.opt;
    if (ctx.module->read_only) return fail("ERROR: module is read only");
    if (o.delete_mode && !o.delete_excluded) {
        if (auto r = ctx.filters.receive(*ctx.in); !r) return r;
    }
    Receiving r{ctx};
    {
        mode_t m = ::umask(0);
        ::umask(m);
        r.umask_bits = m;
    }
    protocol::FlistDecoder dec(ctx.flist);
    for (;;) {
        auto e = dec.decode(*ctx.in);
        if (!e) return std::unexpected(e.error());
        if (!*e) break;
        if (r.list.size() >= protocol::kMaxFlistEntries)
            return fail("protocol error: file list longer than " + std::to_string(protocol::kMaxFlistEntries));
        if (S_ISREG((*e)->mode) || S_ISLNK((*e)->mode)) ctx.stats.total_size += static_cast<std::uint64_t>((*e)->size);
        r.list.push_back(std::move(**e));
    }
    protocol::IdNames users, groups;
    if (!o.numeric_ids) {
        if (o.owner) {
            auto u = protocol::decode_id_list(*ctx.in);
            if (!u) return std::unexpected(u.error());
            users = std::move(*u);
        }
        if (o.group) {
            auto g = protocol::decode_id_list(*ctx.in);
            if (!g) return std::unexpected(g.error());
            groups = std::move(*g);
        }
    }
    auto ioerr = ctx.in->read_i32();
    if (!ioerr) return std::unexpected(ioerr.error());
    r.sender_io_error = *ioerr;

    // Map the sender's ids to ours by name (recv_id_list / match_uid), unless numeric.
    if (!o.numeric_ids && !ctx.module->numeric_ids && ctx.module->am_root) {
        std::map<std::uint32_t, std::uint32_t> umap, gmap;
        for (const auto& [id, name] : users) {
            struct passwd pw {}, *res = nullptr;
            std::string buf(16384, '\0');
            if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res) == 0 && res) umap[id] = pw.pw_uid;
        }
        for (const auto& [id, name] : groups) {
            struct group gr {}, *res = nullptr;
            std::string buf(16384, '\0');
            if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res) == 0 && res) gmap[id] = gr.gr_gid;
        }
        for (auto& e : r.list) {
            if (auto it = umap.find(e.uid); it != umap.end()) e.uid = it->second;
            if (auto it = gmap.find(e.gid); it != gmap.end()) e.gid = it->second;
        }
    }
    protocol::sort_file_list(r.list);
    protocol::clean_file_list(r.list);
    if (r.list.empty()) return {};

    std::string dest_arg = o.paths.empty() ? std::string() : module_relative_arg(ctx.module->name, o.paths[0]);
    choose_destination(r, dest_arg);
    r.plan_hardlinks();

    Result<void> gen_result;
    std::thread gen([&] {
        gen_result = r.generate();
        if (!gen_result) {
            // Unblock the receiver's read: the session ends with the generator's error.
            ::shutdown(ctx.in_fd, SHUT_RD);
        }
    });
    Result<void> recv_result = r.receive();
    if (!recv_result) {
        r.abort = true;
        r.events.push({RecvEvent::failed, 0});
    }
    gen.join();
    if (!recv_result) return recv_result;
    return gen_result;
}

}  // namespace sfs::server::rsync
