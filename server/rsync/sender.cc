// The sender role (a pull: the client passed --sender). Mirrors flist.c send_file_list and
// sender.c send_files at protocol 27: build and send the file list, then answer each index
// the client's generator asks for with the delta against its block sums.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "protocol/rsync_match.h"
#include "server/rsync/arg_glob.h"
#include "server/rsync/transfer_log.h"
#include "server/rsync/context.h"
#include "server/rsync/filter_dirs.h"

namespace sfs::server::rsync {

namespace {

using protocol::FileEntry;

constexpr std::size_t kMaxSendEntries = 5'000'000;

struct Builder {
    Context& ctx;
    std::vector<FileEntry> list;
    std::set<std::string> seen;
    std::int32_t io_error = 0;
    // The client's dir-merge rules: one level per directory of the walk (filter_dirs.h).
    std::optional<DirFilterStack> dirs;

    Result<protocol::Digest> file_md4(const std::string& rel) {
        auto fd = ctx.root.open_beneath(rel, O_RDONLY | (ctx.opt.copy_links ? 0 : O_NOFOLLOW));
        if (!fd) return fail(rel + ": " + std::strerror(fd.error()), fd.error());
        protocol::Md4 m;
        std::string buf(256 * 1024, '\0');
        for (;;) {
            ssize_t n = ::read(fd->get(), buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return fail(rel + ": read: " + std::strerror(errno), errno);
            }
            if (n == 0) break;
            m.update(buf.data(), static_cast<std::size_t>(n));
        }
        return m.finish();
    }

    // Adds one entry from its stat; returns false when it was skipped.
    // -L / -k: a symlink is sent as what it points to (-k: only when that is a directory).
    // The referent is resolved beneath the module root, so a link leading outside stays
    // unresolved: it is reported like a dangling link ("symlink has no referent").
    bool follow_link(const std::string& local, struct stat& st) {
        const ServerOptions& o = ctx.opt;
        if (!S_ISLNK(st.st_mode) || !(o.copy_links || o.copy_dirlinks)) return true;
        auto fd = ctx.root.open_beneath(local, O_PATH);
        struct stat target {};
        if (!fd || fstat(fd->get(), &target) < 0) {
            // -k: a dangling link stays a link; one that leads out of the module (EXDEV
            // from RESOLVE_BENEATH) is left out, so the client cannot be handed a link
            // that reaches outside through its own copy of the tree.
            if (!o.copy_links && !(!fd && fd.error() == EXDEV)) return true;
            ctx.error("symlink has no referent: \"" + local + "\" (in " + ctx.module->name + ")");
            io_error |= 1;
            return false;
        }
        if (!o.copy_links && !S_ISDIR(target.st_mode)) return true;
        st = target;
        return true;
    }

    bool add(const std::string& wire, const std::string& local, struct stat& st, bool top) {
        const ServerOptions& o = ctx.opt;
        if (!follow_link(local, st)) return false;
        if (list.size() >= kMaxSendEntries) {
            ctx.error("file list too long (more than 5000000 entries), truncated");
            io_error |= 1;
            return false;
        }
        if (wire != "." && ctx.filters.excluded(wire, S_ISDIR(st.st_mode), dirs ? &*dirs : nullptr)) return false;
        if (ctx.daemon_excluded(local, S_ISDIR(st.st_mode))) return false;
        FileEntry e;
        e.name = wire;
        e.local_path = local;
        e.mode = st.st_mode;
        if (ctx.outgoing_chmod && !S_ISLNK(st.st_mode)) e.mode = ctx.outgoing_chmod->apply(e.mode);
        e.mtime = st.st_mtime;
        e.atime = st.st_atime;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.top_dir = top;
        if (S_ISREG(st.st_mode)) {
            e.size = st.st_size;
            if (o.max_size >= 0 && e.size > o.max_size) return false;
            if (o.min_size >= 0 && e.size < o.min_size) return false;
            if (o.hard_links) {
                e.dev = static_cast<std::int64_t>(st.st_dev);
                e.ino = static_cast<std::int64_t>(st.st_ino);
            }
            if (o.checksum) {
                auto d = file_md4(local);
                if (!d) {
                    ctx.error("rsync: " + d.error().message + " (in " + ctx.module->name + ")");
                    io_error |= 1;
                    return false;
                }
                e.sum = *d;
            }
        } else if (S_ISDIR(st.st_mode)) {
            e.size = st.st_size;
        } else if (S_ISLNK(st.st_mode)) {
            if (!o.links) {
                ctx.info("skipping non-regular file \"" + wire + "\"");
                return false;
            }
            std::string base;
            auto dir = ctx.root.open_parent(local, base);
            if (!dir) return false;
            std::string target(4096, '\0');
            ssize_t n = readlinkat(dir->get(), base.c_str(), target.data(), target.size());
            if (n < 0) {
                io_error |= 1;
                return false;
            }
            target.resize(static_cast<std::size_t>(n));
            if (ctx.module->munge_symlinks && target.starts_with("/rsyncd-munged/"))
                target.erase(0, std::strlen("/rsyncd-munged/"));
            e.link_target = target;
            e.size = static_cast<std::int64_t>(target.size());
        } else if (protocol::is_device(st.st_mode)) {
            if (!o.devices) {
                ctx.info("skipping non-regular file \"" + wire + "\"");
                return false;
            }
            e.rdev = static_cast<std::uint32_t>(st.st_rdev);
        } else if (protocol::is_special(st.st_mode)) {
            if (!o.specials) {
                ctx.info("skipping non-regular file \"" + wire + "\"");
                return false;
            }
        } else {
            return false;
        }
        if (!seen.insert(wire).second) return false;
        list.push_back(std::move(e));
        return true;
    }

    // Adds the children of directory `local` (wire prefix `wire`), recursing when asked.
    // follow: the transfer root given as "link/" may be a symlink to a directory inside the
    // module (resolution stays beneath the root either way).
    void add_dir_contents(const std::string& wire, const std::string& local, bool recurse, dev_t dev,
                          bool follow = false) {
        auto fd = ctx.root.open_beneath(local, O_RDONLY | O_DIRECTORY | (follow ? 0 : O_NOFOLLOW));
        if (!fd) {
            ctx.error("rsync: opendir \"" + local + "\" (in " + ctx.module->name + ") failed: " +
                      std::strerror(fd.error()) + " (" + std::to_string(fd.error()) + ")");
            io_error |= 1;
            return;
        }
        // push_local_filters(): this directory's merge files apply to what is listed below.
        if (dirs) {
            if (auto r = dirs->push(wire, local); !r) {
                ctx.error("rsync: " + r.error().message);
                io_error |= 1;
                return;
            }
        }
        struct PopOnExit {
            std::optional<DirFilterStack>& d;
            ~PopOnExit() {
                if (d) d->pop();
            }
        } pop_on_exit{dirs};
        int dfd = fd->release();
        DIR* d = fdopendir(dfd);
        if (!d) {
            ::close(dfd);
            io_error |= 1;
            return;
        }
        std::vector<std::string> names;
        while (dirent* de = readdir(d)) {
            std::string n = de->d_name;
            if (n == "." || n == "..") continue;
            names.push_back(std::move(n));
        }
        std::vector<std::pair<std::string, std::string>> subdirs;
        for (const auto& n : names) {
            struct stat st {};
            if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT) io_error |= 1;
                continue;
            }
            std::string w = wire == "." ? n : wire + "/" + n;
            std::string l = local == "." ? n : local + "/" + n;
            if (!add(w, l, st, false)) continue;
            if (S_ISDIR(st.st_mode) && recurse && !(ctx.opt.one_file_system && st.st_dev != dev))
                subdirs.emplace_back(w, l);
        }
        closedir(d);
        const bool follow_dirs = ctx.opt.copy_links || ctx.opt.copy_dirlinks;
        for (const auto& [w, l] : subdirs) add_dir_contents(w, l, recurse, dev, follow_dirs);
    }

    // --ignore-missing-args / --delete-missing-args for a named source that does not
    // exist: skipped, or sent as a mode-0 entry (the receiver deletes that name). True when
    // handled; false means report the error as usual.
    bool missing_arg(const std::string& wire) {
        if (ctx.opt.missing_args == 0) return false;
        if (ctx.opt.missing_args == 2 && seen.insert(wire).second) {
            FileEntry e;
            e.name = wire;
            e.mode = 0;
            list.push_back(std::move(e));
        }
        return true;
    }

    void add_arg(std::string arg) {
        const ServerOptions& o = ctx.opt;
        bool contents = arg.empty() || arg.back() == '/' || arg == "." || arg.ends_with("/.");
        while (!arg.empty() && arg.back() == '/') arg.pop_back();
        if (arg.ends_with("/.")) arg.resize(arg.size() - 2);
        if (arg.empty()) arg = ".";
        auto st = ctx.root.lstat(arg);
        if (st && arg != "." && ctx.daemon_excluded(arg, S_ISDIR(st->st_mode)))
            st = std::unexpected(ENOENT);   // rsync is_daemon_excluded(): as if missing
        if (!st && st.error() == ENOENT && missing_arg(arg == "." ? std::string(".") : base_of(arg))) return;
        if (!st) {
            ctx.error("rsync: link_stat \"" + arg + "\" (in " + ctx.module->name + ") failed: " +
                      std::strerror(st.error()) + " (" + std::to_string(st.error()) + ")");
            io_error |= 1;
            return;
        }
        bool followed = false;
        if (S_ISLNK(st->st_mode) && (o.copy_links || o.copy_dirlinks)) {
            if (!follow_link(arg, *st)) return;
            followed = !S_ISLNK(st->st_mode);
        }
        if (S_ISLNK(st->st_mode) && contents) {
            // "link/" names the directory the link points to, if that stays inside the module.
            auto dfd = ctx.root.open_beneath(arg, O_RDONLY | O_DIRECTORY);
            struct stat dst {};
            if (dfd && fstat(dfd->get(), &dst) == 0 && S_ISDIR(dst.st_mode)) {
                *st = dst;
                followed = true;
            }
        }
        if (S_ISDIR(st->st_mode) && contents) {
            if (!o.recurse && !o.xfer_dirs) {
                ctx.info("skipping directory .");
                return;
            }
            add(".", arg, *st, true);
            add_dir_contents(".", arg, o.recurse, st->st_dev, followed);
            return;
        }
        std::string wire = base_of(arg);
        if (S_ISDIR(st->st_mode)) {
            if (!o.recurse && !o.xfer_dirs) {
                ctx.info("skipping directory " + wire);
                return;
            }
            add(wire, arg, *st, true);
            if (o.recurse) add_dir_contents(wire, arg, true, st->st_dev, followed);
            return;
        }
        add(wire, arg, *st, false);
    }

    // -R (flist.c send_file_list with relative_paths): `dir` is the module-relative base
    // (the part of the argument before "/./", or the --files-from source directory), `fn`
    // the name as it is sent, its parent directories sent first as implied dirs.
    void add_relative(const std::string& dir, std::string fn) {
        const ServerOptions& o = ctx.opt;
        // Clean `fn`: "." and empty components dropped, ".." refused as rsync does.
        bool slash_ending = fn.empty() || fn.back() == '/';
        std::string clean;
        for (std::size_t i = 0; i <= fn.size();) {
            std::size_t j = fn.find('/', i);
            if (j == std::string::npos) j = fn.size();
            std::string comp = fn.substr(i, j - i);
            i = j + 1;
            if (comp.empty() || comp == ".") continue;
            if (comp == "..") {
                ctx.error("found \"..\" dir in relative path: " + fn);
                io_error |= 1;
                return;
            }
            clean += (clean.empty() ? "" : "/") + comp;
        }
        const bool dot = clean.empty();
        if (dot) clean = ".";
        const std::string local = join_path(dir, clean);
        auto st = ctx.root.lstat(local);
        if (st && S_ISLNK(st->st_mode) && (o.copy_dirlinks || slash_ending || dot)) {
            auto dfd = ctx.root.open_beneath(local, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            struct stat dst {};
            if (dfd && fstat(dfd->get(), &dst) == 0) *st = dst;
        }
        if (st && ctx.daemon_path_excluded(local)) st = std::unexpected(ENOENT);
        if (!st && st.error() == ENOENT && missing_arg(clean)) return;
        if (!st) {
            ctx.error("rsync: link_stat \"" + local + "\" (in " + ctx.module->name + ") failed: " +
                      std::strerror(st.error()) + " (" + std::to_string(st.error()) + ")");
            io_error |= 1;
            return;
        }
        if (!dot && ctx.filters.excluded(clean, S_ISDIR(st->st_mode))) return;
        if (S_ISDIR(st->st_mode) && !o.recurse && !o.xfer_dirs) {
            ctx.info("skipping directory " + clean);
            return;
        }
        if (o.implied_dirs && !dot) {
            for (std::size_t s = clean.find('/'); s != std::string::npos; s = clean.find('/', s + 1)) {
                std::string idir = clean.substr(0, s);
                if (seen.contains(idir)) continue;
                auto ist = ctx.root.lstat(join_path(dir, idir));
                if (ist) add(idir, join_path(dir, idir), *ist, false);
            }
        }
        if (S_ISDIR(st->st_mode)) {
            if (!add(clean, local, *st, true)) {
                if (!seen.contains(clean)) return;   // excluded or unreadable
                // Sent before as an implied dir of another name: now a transfer root too.
                for (auto& e : list)
                    if (e.name == clean) e.top_dir = true;
            }
            if (o.recurse) add_dir_contents(clean, local, true, st->st_dev, true);
            else if (slash_ending || dot) add_dir_contents(clean, local, false, st->st_dev, true);
            return;
        }
        add(clean, local, *st, false);
    }
};

// The --files-from names: from the input after the exclude list (--files-from=-, always
// NUL-separated from the client), or from a file in the module (NUL- or line-separated).
// An empty name ends the input list. Bounded in name length and count.
Result<std::vector<std::string>> read_files_from(Context& ctx) {
    const ServerOptions& o = ctx.opt;
    std::vector<std::string> names;
    if (o.files_from_input) {
        std::string cur;
        for (;;) {
            auto b = ctx.in->read_u8();
            if (!b) return std::unexpected(b.error());
            if (*b == 0) {
                if (cur.empty()) break;
                if (names.size() >= kMaxSendEntries) return fail("--files-from list longer than 5000000 names");
                names.push_back(std::move(cur));
                cur.clear();
                continue;
            }
            if (cur.size() >= 4096) return fail("protocol error: --files-from name longer than 4096 bytes");
            cur.push_back(static_cast<char>(*b));
        }
        return names;
    }
    std::string rel = module_relative_arg(ctx.module->name, o.files_from);
    if (rel.empty() || ctx.daemon_path_excluded(rel)) return fail("failed to open files-from file " + o.files_from);
    auto fd = ctx.root.open_beneath(rel, O_RDONLY | O_CLOEXEC);
    if (!fd) return fail("failed to open files-from file " + o.files_from + ": " + std::strerror(fd.error()));
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > (64u << 20)) return fail("files-from file " + o.files_from + " is larger than 64 MiB");
    }
    std::string cur;
    for (char c : text) {
        bool end = o.from0 ? c == '\0' : (c == '\n' || c == '\r');
        if (!end) {
            if (cur.size() < 4096) cur.push_back(c);
            continue;
        }
        if (!cur.empty() && (o.from0 || (cur[0] != '#' && cur[0] != ';'))) names.push_back(cur);
        cur.clear();
        if (names.size() >= kMaxSendEntries) break;
    }
    if (!cur.empty() && (o.from0 || (cur[0] != '#' && cur[0] != ';'))) names.push_back(cur);
    return names;
}

// Undoes unbackslash() for a name that was never escaped (a --files-from line).
std::string escape_backslashes(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

// A pull argument for -R: the module prefix stripped, split at "/./" into the base dir
// (sanitized, module-relative) and the part that is sent (".." refused later).
std::pair<std::string, std::string> split_relative_arg(const std::string& module_name, const std::string& arg) {
    std::string a = unbackslash(arg);
    if (a.starts_with(module_name) && (a.size() == module_name.size() || a[module_name.size()] == '/'))
        a.erase(0, module_name.size());
    while (a.starts_with("/")) a.erase(0, 1);
    std::string dir, fn = a;
    if (auto p = a.find("/./"); p != std::string::npos) {
        dir = module_relative_arg("", a.substr(0, p));
        fn = a.substr(p + 3);
    } else if (a.starts_with("./")) {
        fn = a.substr(2);
    }
    if (dir.empty()) dir = ".";
    return {dir, fn};
}

}  // namespace

Result<void> run_sender(Context& ctx) {
    const ServerOptions& o = ctx.opt;
    if (ctx.module->write_only) return fail("ERROR: module is write only");
    // rsync main.c do_server_sender: removing files is writing to the module.
    if (o.remove_source && ctx.module->read_only)
        return fail(std::string("ERROR: --remove-") + (o.remove_source == 1 ? "source" : "sent") +
                    "-files cannot be used with a read-only module");
    if (auto r = ctx.filters.receive(*ctx.in); !r) return r;

    Builder b{ctx, {}, {}, 0, std::nullopt};
    if (!ctx.filters.dir_merges().empty()) b.dirs.emplace(ctx.filters, module_merge_reader(ctx));
    if (o.files_from_input || !o.files_from.empty()) {
        // Below protocol 31 the names come unframed even when the client multiplexes.
        if (ctx.mux && o.files_from_input) ctx.mux->set_raw(true);
        auto names = read_files_from(ctx);
        if (ctx.mux) ctx.mux->set_raw(false);
        if (!names) return std::unexpected(names.error());
        std::string base = o.paths.empty() ? std::string() : module_relative_arg(ctx.module->name, o.paths[0]);
        while (!base.empty() && base.back() == '/') base.pop_back();
        if (base.empty()) base = ".";
        for (const auto& n : *names) {
            if (o.relative) {
                // A "/./" inside a listed name moves the base further down, as rsync.
                auto [d, f] = split_relative_arg("", escape_backslashes(n));
                b.add_relative(join_path(base, d), f);
            } else {
                b.add_arg(join_path(base, module_relative_arg("", n)));
            }
        }
    } else if (o.relative) {
        for (const auto& p : o.paths) {
            auto [dir, fn] = split_relative_arg(ctx.module->name, p);
            b.add_relative(dir, fn);
        }
        if (o.paths.empty()) b.add_relative(".", "");
    } else {
        std::vector<std::string> args;
        for (const auto& p : o.paths) {
            for (auto& a : expand_arg_glob(ctx.root, module_relative_arg(ctx.module->name, p)))
                args.push_back(std::move(a));
        }
        if (args.empty()) args.emplace_back("");
        for (const auto& a : args) b.add_arg(a);
    }
    std::vector<FileEntry>& list = b.list;

    // Send the list in the order built (as rsync does), then sort it like the client.
    std::string buf;
    protocol::FlistEncoder enc(ctx.flist);
    protocol::IdNames users, groups;
    for (const auto& e : list) {
        enc.encode(e, buf);
        if (S_ISREG(e.mode) || S_ISLNK(e.mode)) ctx.stats.total_size += static_cast<std::uint64_t>(e.size);
        if (o.owner && !o.numeric_ids && !ctx.module->numeric_ids && !users.contains(e.uid)) users[e.uid] = ctx.ids().user_name(e.uid).value_or("");
        if (o.group && !o.numeric_ids && !ctx.module->numeric_ids && !groups.contains(e.gid)) groups[e.gid] = ctx.ids().group_name(e.gid).value_or("");
        if (buf.size() >= 64 * 1024) {
            if (auto r = ctx.out->write(buf); !r) return r;
            buf.clear();
        }
    }
    enc.end(buf);
    if (std::string f = ctx.ids().take_failure(); !f.empty()) ctx.error(f);
    if (!o.numeric_ids) {
        if (o.owner) protocol::encode_id_list(users, buf);
        if (o.group) protocol::encode_id_list(groups, buf);
    }
    protocol::put_i32(buf, o.ignore_errors || ctx.module->ignore_errors ? 0 : b.io_error);
    if (auto r = ctx.out->write(buf); !r) return r;
    if (auto r = ctx.out->flush(); !r) return r;
    protocol::sort_file_list(list);
    if (list.empty()) return {};   // rsync exits here; the client reports the empty list
    if (ctx.mux) {
        // sender.c successful_send(): the client has the file; remove our copy unless it
        // changed since it was listed.
        ctx.mux->on_success = [&ctx, &list](std::int32_t ndx) {
            if (ndx < 0 || static_cast<std::size_t>(ndx) >= list.size()) return;
            const FileEntry& e = list[static_cast<std::size_t>(ndx)];
            if (e.mode == 0 || S_ISDIR(e.mode) || e.local_path.empty()) return;
            auto st = ctx.root.lstat(e.local_path);
            if (!st) return;
            if ((st->st_mode & S_IFMT) != (e.mode & S_IFMT) ||
                (S_ISREG(st->st_mode) && (st->st_size != e.size || st->st_mtime != e.mtime))) {
                ctx.error("ERROR: Skipping sender remove for changed file: " + e.local_path);
                return;
            }
            std::string base;
            auto dir = ctx.root.open_parent(e.local_path, base);
            if (!dir || unlinkat(dir->get(), base.c_str(), 0) < 0) {
                ctx.error("rsync: remove source file \"" + e.local_path + "\" (in " + ctx.module->name +
                          ") failed: " + std::strerror(dir ? errno : dir.error()));
                return;
            }
            if (ctx.opt.verbose) ctx.info("sender removed " + e.name);
        };
    }

    int phase = 0;
    for (;;) {
        auto ndx = ctx.in->read_i32();
        if (!ndx) return std::unexpected(ndx.error());
        if (*ndx == -1) {
            if (++phase > 1) break;
            if (auto r = ctx.out->write_i32(-1); !r) return r;
            continue;
        }
        if (*ndx < 0 || static_cast<std::size_t>(*ndx) >= list.size())
            return fail("protocol error: invalid file index " + std::to_string(*ndx) + " (0 - " +
                        std::to_string(list.size() - 1) + ") from " + ctx.peer);
        const FileEntry& e = list[static_cast<std::size_t>(*ndx)];
        if (!S_ISREG(e.mode)) return fail("protocol error: transfer requested for non-file " + e.name);
        if (o.dry_run) {
            if (auto r = ctx.out->write_i32(*ndx); !r) return r;
            ++ctx.stats.files_transferred;
            continue;
        }
        auto sums = protocol::read_sums(*ctx.in, 1 << 22);
        if (!sums) return std::unexpected(sums.error());
        auto fd = ctx.root.open_beneath(e.local_path, O_RDONLY | (o.copy_links ? 0 : O_NOFOLLOW));
        struct stat st {};
        if (!fd || fstat(fd->get(), &st) < 0 || !S_ISREG(st.st_mode)) {
            int err = fd ? (S_ISREG(st.st_mode) ? errno : EINVAL) : fd.error();
            if (err == ENOENT) ctx.error("file has vanished: \"" + e.local_path + "\" (in " + ctx.module->name + ")");
            else ctx.error("rsync: send_files failed to open \"" + e.local_path + "\" (in " + ctx.module->name +
                           "): " + std::strerror(err) + " (" + std::to_string(err) + ")");
            continue;   // below protocol 30 nothing is sent for this index
        }
        std::string head;
        protocol::put_i32(head, *ndx);
        protocol::write_sum_head(head, sums->head);
        if (auto r = ctx.out->write(head); !r) return r;
        protocol::TokenWriter tokens(*ctx.out, o.compress, o.compress_level, ctx.protocol);
        tokens.set_block_history(!o.new_compress);
        protocol::MatchStats ms;
        int rfd = fd->get();
        protocol::BlockReader reader = [rfd](std::int64_t off, std::uint8_t* buf, std::size_t n) -> std::size_t {
            for (;;) {
                ssize_t r = ::pread(rfd, buf, n, off);
                if (r < 0 && errno == EINTR) continue;
                return r < 0 ? 0 : static_cast<std::size_t>(r);
            }
        };
        auto digest = protocol::match_and_send(tokens, *sums, reader, st.st_size, ctx.seed, &ms, o.inplace);
        if (!digest) return std::unexpected(digest.error());
        if (auto r = ctx.out->write(digest->data(), digest->size()); !r) return r;
        spdlog::debug("rsync [{}] send {} ({} literal, {} matched bytes)", ctx.module->name, e.local_path,
                      ms.literal, ms.matched);
        ++ctx.stats.files_transferred;
        log_transfer(*ctx.module, TransferLogItem{true, e.local_path, e.name, &e,
                                                  static_cast<std::int64_t>(ms.literal)});
    }
    if (auto r = ctx.out->write_i32(-1); !r) return r;
    // handle_stats(): total read, total written, total size (longints below 30).
    std::string st;
    protocol::put_longint(st, static_cast<std::int64_t>(ctx.raw_in->bytes_read()));
    protocol::put_longint(st, static_cast<std::int64_t>(ctx.out->bytes_written()));
    protocol::put_longint(st, static_cast<std::int64_t>(ctx.stats.total_size));
    if (auto r = ctx.out->write(st); !r) return r;
    if (auto r = ctx.out->flush(); !r) return r;
    auto bye = ctx.in->read_i32();
    if (!bye) return std::unexpected(bye.error());
    if (*bye != -1) return fail("protocol error: invalid packet at end of run (" + std::to_string(*bye) + ")");
    return {};
}

}  // namespace sfs::server::rsync
