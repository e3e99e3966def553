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

namespace sfs::server::rsync {

namespace {

using protocol::FileEntry;

constexpr std::size_t kMaxSendEntries = 5'000'000;

struct Builder {
    Context& ctx;
    std::vector<FileEntry> list;
    std::set<std::string> seen;
    std::int32_t io_error = 0;

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
        if (wire != "." && ctx.filters.excluded(wire, S_ISDIR(st.st_mode))) return false;
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

    void add_arg(std::string arg) {
        const ServerOptions& o = ctx.opt;
        bool contents = arg.empty() || arg.back() == '/' || arg == "." || arg.ends_with("/.");
        while (!arg.empty() && arg.back() == '/') arg.pop_back();
        if (arg.ends_with("/.")) arg.resize(arg.size() - 2);
        if (arg.empty()) arg = ".";
        auto st = ctx.root.lstat(arg);
        if (st && arg != "." && ctx.daemon_excluded(arg, S_ISDIR(st->st_mode)))
            st = std::unexpected(ENOENT);   // rsync is_daemon_excluded(): as if missing
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
};

std::string user_name(std::uint32_t uid) {
    struct passwd pw {}, *res = nullptr;
    std::string buf(16384, '\0');
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) return {};
    return pw.pw_name;
}

std::string group_name(std::uint32_t gid) {
    struct group gr {}, *res = nullptr;
    std::string buf(16384, '\0');
    if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &res) != 0 || !res) return {};
    return gr.gr_name;
}

}  // namespace

Result<void> run_sender(Context& ctx) {
    const ServerOptions& o = ctx.opt;
    if (ctx.module->write_only) return fail("ERROR: module is write only");
    if (auto r = ctx.filters.receive(*ctx.in); !r) return r;

    Builder b{ctx, {}, {}, 0};
    std::vector<std::string> args;
    for (const auto& p : o.paths) {
        for (auto& a : expand_arg_glob(ctx.root, module_relative_arg(ctx.module->name, p)))
            args.push_back(std::move(a));
    }
    if (args.empty()) args.emplace_back("");
    for (const auto& a : args) b.add_arg(a);
    std::vector<FileEntry>& list = b.list;

    // Send the list in the order built (as rsync does), then sort it like the client.
    std::string buf;
    protocol::FlistEncoder enc(ctx.flist);
    protocol::IdNames users, groups;
    for (const auto& e : list) {
        enc.encode(e, buf);
        if (S_ISREG(e.mode) || S_ISLNK(e.mode)) ctx.stats.total_size += static_cast<std::uint64_t>(e.size);
        if (o.owner && !ctx.module->numeric_ids && !users.contains(e.uid)) users[e.uid] = user_name(e.uid);
        if (o.group && !ctx.module->numeric_ids && !groups.contains(e.gid)) groups[e.gid] = group_name(e.gid);
        if (buf.size() >= 64 * 1024) {
            if (auto r = ctx.out->write(buf); !r) return r;
            buf.clear();
        }
    }
    enc.end(buf);
    if (!o.numeric_ids) {
        if (o.owner) protocol::encode_id_list(users, buf);
        if (o.group) protocol::encode_id_list(groups, buf);
    }
    protocol::put_i32(buf, o.ignore_errors || ctx.module->ignore_errors ? 0 : b.io_error);
    if (auto r = ctx.out->write(buf); !r) return r;
    if (auto r = ctx.out->flush(); !r) return r;
    protocol::sort_file_list(list);
    if (list.empty()) return {};   // rsync exits here; the client reports the empty list

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
    protocol::put_longint(st, static_cast<std::int64_t>(ctx.in->bytes_read()));
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
