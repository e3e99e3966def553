// The generator of a push (generator.c): directories, symlinks, devices, the quick check,
// block sums of each basis, the redo phase, hard links and final directory attributes.
// Runs on its own thread and only writes to the client.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
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
#include "server/rsync/filter_dirs.h"
#include "server/rsync/push.h"

namespace sfs::server::rsync {

// Makes room for a new entry of type `mode` at `path`: removes what is there when its
// type differs. Returns the existing stat (if kept) through `st`.
bool Push::make_room(const std::string& path, mode_t mode, struct stat& st, bool& exists) {
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

void Push::gen_dir(std::size_t i) {
    const FileEntry& e = list[i];
    std::string path = path_of(e);
    struct stat st {};
    bool exists = false;
    if (o().keep_dirlinks) {
        // -K: a symlink to a directory (resolved beneath the module root) stands in for
        // the directory; what the list puts below it goes through the link.
        auto cur = ctx.root.lstat(path);
        if (cur && S_ISLNK(cur->st_mode) && ctx.root.open_beneath(path, O_PATH | O_DIRECTORY)) {
            dirlinks_kept.insert(i);
            return;
        }
    }
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
        dirs_created.insert(i);
    }
}

// generator.c recv_generator for a mode-0 ("missing") entry: what the destination has
// under that name is deleted (a directory with its contents), unless filtered.
void Push::delete_missing(const FileEntry& e) {
    std::string path = path_of(e);
    auto st = ctx.root.lstat(path);
    if (!st) return;
    if (!o().delete_excluded) {
        // The client's dir-merge rules of the directories above the name count too.
        if (!ctx.filters.dir_merges().empty()) {
            const auto local_of = [this](const std::string& w) { return join_path(dest, w); };
            Result<void> r;
            if (!missing_dirs) {
                missing_dirs.emplace(ctx.filters, module_merge_reader(ctx));
                r = missing_dirs->move_to(".", local_of);
            }
            if (r) r = missing_dirs->move_to(parent_of(e.name), local_of);
            if (!r) {
                missing_dirs.reset();
                ctx.error("rsync: " + r.error().message);
                return;
            }
        }
        if (ctx.filters.excluded(e.name, S_ISDIR(st->st_mode), missing_dirs ? &*missing_dirs : nullptr)) return;
    }
    if (ctx.daemon_excluded(path, S_ISDIR(st->st_mode))) return;
    if (o().max_delete >= 0 && deletions >= o().max_delete) return;
    ++deletions;
    if (o().log_format.find("%i") != std::string::npos)
        ctx.info("*deleting   " + e.name + (S_ISDIR(st->st_mode) ? "/" : ""));
    else if (o().verbose)
        ctx.info("deleting " + e.name + (S_ISDIR(st->st_mode) ? "/" : ""));
    if (o().dry_run) return;
    std::string base;
    auto dir = ctx.root.open_parent(path, base);
    if (dir) remove_tree(dir->get(), base, path);
}

// -R --no-implied-dirs: the list lacks the parents of a name, so the missing ones are
// created (generator.c make_path with the default directory mode). Each directory is
// checked once per transfer.
void Push::make_parents(const std::string& name) {
    auto slash = name.rfind('/');
    if (slash == std::string::npos || parents_ok.contains(name.substr(0, slash))) return;
    parents_ok.insert(name.substr(0, slash));
    for (std::size_t s = name.find('/'); s != std::string::npos; s = name.find('/', s + 1)) {
        std::string p = join_path(dest, name.substr(0, s));
        if (ctx.root.lstat(p)) continue;
        std::string base;
        auto dir = ctx.root.open_parent(p, base);
        if (!dir || (mkdirat(dir->get(), base.c_str(), 0777 & ~umask_bits) < 0 && errno != EEXIST)) {
            ctx.error("rsync: mkdir \"" + p + "\" (in " + ctx.module->name + ") failed: " +
                      errstr(dir ? errno : dir.error()));
            return;
        }
    }
}

void Push::gen_symlink(const FileEntry& e) {
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
    if (o().dry_run) return;
    // -b: the old link (its target differs) is kept as a backup first.
    if (exists && !make_backup(dir->get(), base, local_name.empty() ? e.name : local_name)) return;
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

void Push::gen_device(const FileEntry& e) {
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
bool Push::up_to_date(const std::string& path, const FileEntry& e, const struct stat& st) {
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
Result<void> Push::gen_file(std::int32_t ndx, bool redo_pass) {
    const FileEntry& e = list[static_cast<std::size_t>(ndx)];
    std::string path = path_of(e);
    struct stat st {};
    bool exists = false;
    std::string basis_path;   // a basis-dir file chosen by try_alt_dests(), else the destination
    if (!redo_pass) {
        if (hlink_leader.contains(ndx)) return {};   // linked to its leader at the end
        if (!make_room(path, e.mode, st, exists)) return {};
        if (o().existing && !exists) return {};
        if (o().ignore_existing && exists) return {};
        if (exists && o().update_only && st.st_mtime > e.mtime) return {};
        // Basis dirs come before the destination's own quick check (generator.c
        // recv_generator): a --link-dest match replaces an up-to-date copy by a link.
        if (!basis_dirs.empty() && (!exists || o().alt_dest != ServerOptions::AltDest::copy)) {
            AltResult alt = try_alt_dests(ndx, path, exists, st);
            if (alt == AltResult::handled) {
                report_success(ndx, false);
                return {};
            }
            if (alt == AltResult::basis) basis_path = basis_for(ndx);
        }
        // --partial-dir: a partial file left by an interrupted transfer is the basis
        // (generator.c recv_generator partialptr), and is dropped once the file is current.
        std::string ppath = basis_path.empty() ? partial_path(path) : std::string();
        if (!ppath.empty()) {
            auto pst = ctx.root.lstat(ppath);
            if (!pst || !S_ISREG(pst->st_mode)) ppath.clear();
        }
        if (exists && basis_path.empty() && up_to_date(path, e, st)) {
            if (!o().dry_run) {
                if (!ppath.empty()) remove_partial(ppath);
                set_path_attrs(path, e, false);
            }
            report_success(ndx, false);
            return {};
        }
        if (!ppath.empty()) {
            std::lock_guard l(basis_mu);
            basis_of[ndx] = ppath;
            basis_path = ppath;
        }
    } else {
        auto cur = ctx.root.lstat(path);
        exists = cur && S_ISREG(cur->st_mode);
        basis_path = basis_for(ndx);
    }
    if (!basis_path.empty()) exists = true;   // the delta goes against the basis-dir file
    else basis_path = path;
    std::string msg;
    protocol::put_i32(msg, ndx);
    if (o().dry_run) return ctx.out->write(msg);
    // The basis: the current file unless --whole-file.
    protocol::SumHead head;
    UniqueFd fd;
    if (exists && !o().whole_file) {
        auto f = ctx.root.open_beneath(basis_path, O_RDONLY | O_NOFOLLOW);
        struct stat bst {};
        if (f && fstat(f->get(), &bst) == 0 && S_ISREG(bst.st_mode) && bst.st_size > 0) {
            head = protocol::sum_sizes_sqroot(bst.st_size, ctx.protocol,
                                              redo_pass ? protocol::kSumLength : protocol::kShortSumLength,
                                              o().block_size);
            fd = std::move(*f);
        }
    }
    if (head.count > 0) {
        // pread, not mmap: a basis truncated meanwhile must not raise SIGBUS.
        int bfd = fd.get();
        protocol::write_sums(msg, head, [bfd](std::int64_t off, std::uint8_t* buf, std::size_t n) {
            return read_at(bfd, buf, n, off);
        }, ctx.seed);
    } else {
        protocol::write_sum_head(msg, protocol::SumHead{});
    }
    return ctx.out->write(msg);
}

Result<void> Push::generate() {
    delete_pass();
    std::string refused_dir;  // a daemon-excluded directory: nothing below it is received
    for (std::size_t i = 0; i < list.size(); ++i) {
        const FileEntry& e = list[i];
        if (!e.active) continue;
        if (abort.load()) return fail("transfer aborted");
        if (!refused_dir.empty() && e.name.starts_with(refused_dir)) continue;
        if (ctx.daemon_excluded(path_of(e), S_ISDIR(e.mode))) {
            // rsync generator.c recv_generator(): the client's exit code becomes 23.
            ctx.error(std::string("ERROR: daemon refused to receive ") + (S_ISDIR(e.mode) ? "directory" : "file") +
                      " \"" + e.name + "\"");
            if (S_ISDIR(e.mode)) refused_dir = e.name == "." ? std::string() : e.name + "/";
            continue;
        }
        if (e.mode == 0) {
            // --delete-missing-args: the sender named something that does not exist.
            delete_missing(e);
            continue;
        }
        // -R: below protocol 30 a sending client never says --no-implied-dirs, so missing
        // parents are made whenever a name's directory is not there yet.
        if (o().relative && !o().dry_run && local_name.empty()) make_parents(e.name);
        if (S_ISDIR(e.mode)) {
            if (dest_via_link && e.name == ".") continue;
            gen_dir(i);
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
            if (dirlinks_kept.contains(*it)) continue;
            const FileEntry& e = list[*it];
            set_path_attrs(path_of(e), e, false, dirs_created.contains(*it));
        }
    }
    // Final goodbye.
    if (auto r = ctx.out->write_i32(-1); !r) return r;
    return ctx.out->flush();
}

void Push::report_success(std::int32_t ndx, bool transferred) {
    if (o().remove_source == 0 || o().dry_run || (o().remove_source == 2 && !transferred)) return;
    std::string msg;
    protocol::put_i32(msg, ndx);
    (void)ctx.out->send_msg(protocol::MsgTag::success, msg);
}

// -H: group regular files by the sender's (dev, ino); the first in list order carries
// the data, the others become links to it (hlink.c, protocol < 30).
void Push::plan_hardlinks() {
    if (!o().hard_links) return;
    std::map<std::pair<std::int64_t, std::int64_t>, std::int32_t> first;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const FileEntry& e = list[i];
        if (!e.active || !S_ISREG(e.mode) || e.dev < 0) continue;
        auto [it, inserted] = first.emplace(std::make_pair(e.dev, e.ino), static_cast<std::int32_t>(i));
        if (!inserted) hlink_leader[static_cast<std::int32_t>(i)] = it->second;
    }
}

void Push::link_hardlinks() {
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

}  // namespace sfs::server::rsync
