// The receiver of a push (receiver.c recv_files) and its entry point run_receiver(): reads
// the file list, starts the generator thread (generator.cc), then applies each file's token
// stream against its basis into a temp file, verifies the whole-file MD4 and renames it into
// place. A failed checksum in phase 0 becomes a redo request to the generator. The threading
// design is described in push.h.
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
#include "server/rsync/arg_glob.h"
#include "server/rsync/id_map.h"
#include "server/rsync/push.h"
#include "server/rsync/transfer_log.h"

namespace sfs::server::rsync {

// pread until n bytes or EOF; returns the bytes read.
std::size_t read_at(int fd, std::uint8_t* buf, std::size_t n, std::int64_t off) {
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::pread(fd, buf + got, n - got, off + static_cast<std::int64_t>(got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += static_cast<std::size_t>(r);
    }
    return got;
}

std::string errstr(int e) { return std::string(std::strerror(e)) + " (" + std::to_string(e) + ")"; }

// receive_data() + finish_transfer() for one file. `ok` false: checksum mismatch.
Result<void> Push::receive_file(std::int32_t ndx, int phase, bool& ok) {
    const FileEntry& e = list[static_cast<std::size_t>(ndx)];
    std::string path = path_of(e);
    // The sender echoes our sum head (not the block sums) before the tokens.
    auto head = protocol::read_sum_head(*ctx.in, 1 << 22);
    if (!head) return std::unexpected(head.error());
    const protocol::SumHead& h = *head;
    std::string base;
    auto dir = ctx.root.open_parent(path, base);
    // Basis.
    UniqueFd basis_fd;
    bool basis_changed = false;
    std::vector<std::uint8_t> block(static_cast<std::size_t>(h.count > 0 ? h.blength : 0));
    bool exists = false;
    struct stat bst {};
    if (dir && fstatat(dir->get(), base.c_str(), &bst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(bst.st_mode))
        exists = true;
    // A --*-dest file or a --partial-dir file the generator took the block sums from.
    std::string alt_basis = basis_for(ndx);
    if (!alt_basis.empty() && h.count > 0) {
        auto f = ctx.root.open_beneath(alt_basis, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (f) basis_fd = std::move(*f);
    } else if (exists && h.count > 0) {
        int f = openat(dir->get(), base.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (f >= 0) basis_fd.reset(f);
    }
    // Output: a temp file in the destination directory, or in --temp-dir.
    UniqueFd out;
    std::string tmp;
    bool inplace = o().inplace;
    UniqueFd tdir_own;
    if (dir && !inplace && !temp_dir.empty()) {
        auto t = ctx.root.open_beneath(temp_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (t) tdir_own = std::move(*t);
        else ctx.error("rsync: temp dir \"" + temp_dir + "\" (in " + ctx.module->name + "): " + errstr(t.error()));
    }
    const int tdir = tdir_own ? tdir_own.get() : (dir ? dir->get() : -1);
    if (dir && (temp_dir.empty() || tdir_own || inplace)) {
        if (inplace) {
            if (exists) (void)make_backup(dir->get(), base, local_name.empty() ? e.name : local_name, true);
            int f = openat(dir->get(), base.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (f >= 0) out.reset(f);
        } else {
            static thread_local std::mt19937 rng{std::random_device{}()};
            for (int tries = 0; tries < 100 && !out; ++tries) {
                char suffix[8];
                std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(rng() & 0xFFFFFF));
                tmp = "." + base.substr(0, 200) + "." + suffix;
                int f = openat(tdir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
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
    tokens.set_block_history(!o().new_compress);
    protocol::Md4 sum = protocol::file_transfer_sum(ctx.seed);
    std::int64_t offset = 0;
    bool write_failed = !out;
    // A fresh temp file starts as a hole: all-zero runs are skipped (the final ftruncate
    // sets the length), so sparse files stay sparse and cost no writes.
    auto all_zero = [](const std::uint8_t* p, std::size_t n) {
        return n > 0 && p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0;
    };
    auto put = [&](const std::uint8_t* p, std::size_t n) {
        sum.update(p, n);
        if (write_failed) return;
        if (!inplace && all_zero(p, n)) return;
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
        // A basis that shrank since the generator read it: zeros stand in (the stream
        // stays in sync), the checksum then fails and the file is redone in phase 1.
        std::size_t got = basis_fd ? read_at(basis_fd.get(), block.data(), static_cast<std::size_t>(blen), boff) : 0;
        if (got < static_cast<std::size_t>(blen)) {
            std::memset(block.data() + got, 0, static_cast<std::size_t>(blen) - got);
            basis_changed = true;
        }
        const std::uint8_t* bp = block.data();
        if (auto r = tokens.see_block(bp, static_cast<std::size_t>(blen)); !r) {
            stream_ok = r;
            break;
        }
        put(bp, static_cast<std::size_t>(blen));
        offset += blen;
    }
    auto cleanup_tmp = [&] {
        if (!tmp.empty() && tdir >= 0) unlinkat(tdir, tmp.c_str(), 0);
    };
    const std::string tmp_path = join_path(temp_dir.empty() ? parent_of(path) : temp_dir, tmp);
    // Connection or stream failure mid-file: --partial keeps what arrived, in place or
    // (--partial-dir) as the partial file the next attempt starts from.
    auto keep_partial = [&] {
        if (!(o().partial && !inplace && out && !tmp.empty() && dir && offset > 0)) return cleanup_tmp();
        std::string ppath = partial_path(path);
        if (!o().partial_dir.empty()) {
            if (ppath.empty() || !make_partial_dir(ppath)) return cleanup_tmp();
            (void)move_into_place(tdir, tmp, tmp_path, ppath, e);
            return;
        }
        (void)move_into_place(tdir, tmp, tmp_path, path, e);
    };
    if (!stream_ok) {
        keep_partial();
        return std::unexpected(stream_ok.error());
    }
    protocol::Digest remote{};
    if (auto r = ctx.in->read_exact(remote.data(), remote.size()); !r) {
        keep_partial();
        return r;
    }
    protocol::Digest local = sum.finish();
    ok = local == remote && !basis_changed;
    if (write_failed) {
        cleanup_tmp();
        return {};
    }
    if (ftruncate(out.get(), offset) < 0)
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
    if (!inplace && exists && !o().delay_updates && !make_backup(dir->get(), base, local_name.empty() ? e.name : local_name)) {
        ctx.error("rsync: backup of \"" + path + "\" failed; the update was discarded");
        cleanup_tmp();
        return {};
    }
    if (!inplace) {
        std::string ppath = partial_path(path);
        if (o().delay_updates && !ppath.empty()) {
            // --delay-updates: staged as the partial file, renamed at the very end; a
            // staging dir that cannot be made discards the update (rsync does the same).
            if (!make_partial_dir(ppath)) {
                ctx.error("rsync: failed to create partial dir for \"" + path + "\" (in " + ctx.module->name +
                          "); the update was discarded");
                cleanup_tmp();
            } else if (move_into_place(tdir, tmp, tmp_path, ppath, e)) {
                delayed.emplace_back(ppath, ndx);
            }
        } else if (move_into_place(tdir, tmp, tmp_path, path, e)) {
            if (!alt_basis.empty() && alt_basis == ppath) remove_partial(ppath);
            report_success(ndx, true);
        }
    } else {
        report_success(ndx, true);
    }
    spdlog::debug("rsync [{}] recv {} ({} bytes, {} blocks of {} from the basis)", ctx.module->name, path,
                  offset, h.count, h.blength);
    ++ctx.stats.files_transferred;
    return {};
}

Result<void> Push::receive() {
    int phase = 0;
    for (;;) {
        auto ndx = ctx.in->read_i32();
        if (!ndx) return std::unexpected(ndx.error());
        if (*ndx == -1) {
            ++phase;
            // Before the generator's final directory touch-up: the renames change them.
            if (phase > 1 && !delayed.empty()) finish_delayed();
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
        if (ok) log_transfer(*ctx.module, TransferLogItem{false, path_of(e), e.name, &e, e.size});
    }
}

// get_local_name(): where the list lands.
void choose_destination(Push& r, std::string dest_arg) {
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
    if (st && S_ISLNK(st->st_mode) && dest_arg != ".") {
        auto fd = ctx.root.open_beneath(dest_arg, O_PATH | O_DIRECTORY);
        if (fd) {
            r.dest = dest_arg;
            r.dest_via_link = true;
            return;
        }
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

Result<void> run_receiver(Context& ctx) {
    const ServerOptions& o = ctx.opt;
    if (ctx.module->read_only) return fail("ERROR: module is read only");
    if (o.delete_mode && !o.delete_excluded) {
        if (auto r = ctx.filters.receive(*ctx.in); !r) return r;
    }
    Push r{ctx};
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
        if (ctx.incoming_chmod && !S_ISLNK((*e)->mode) && (*e)->mode != 0)
            (*e)->mode = ctx.incoming_chmod->apply((*e)->mode);
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

    // --usermap / --groupmap rules come first, then the sender's ids are mapped to ours by
    // name (recv_id_list / recv_add_id / match_uid), unless numeric.
    std::vector<IdMapRule> urules, grules;
    if (!o.usermap.empty()) {
        auto u = parse_id_map(o.usermap, false, ctx.ids());
        if (!u) return std::unexpected(u.error());
        urules = std::move(*u);
    }
    if (!o.groupmap.empty()) {
        auto g = parse_id_map(o.groupmap, true, ctx.ids());
        if (!g) return std::unexpected(g.error());
        grules = std::move(*g);
    }
    const bool by_name = !o.numeric_ids && !ctx.module->numeric_ids;
    if (ctx.module->am_root && (by_name || !urules.empty() || !grules.empty())) {
        std::map<std::uint32_t, std::uint32_t> umap, gmap;
        auto name_of = [](const protocol::IdNames& names, std::uint32_t id) {
            auto it = names.find(id);
            return it == names.end() ? std::string() : it->second;
        };
        for (const auto& e : r.list) {
            if (!umap.contains(e.uid)) {
                std::string name = name_of(users, e.uid);
                std::uint32_t to = e.uid;
                if (auto m = map_id(urules, e.uid, name)) {
                    to = *m;
                } else if (by_name && !name.empty()) {
                    if (auto id = ctx.ids().user_id(name)) to = *id;
                }
                umap[e.uid] = to;
            }
            if (!gmap.contains(e.gid)) {
                std::string name = name_of(groups, e.gid);
                std::uint32_t to = e.gid;
                if (auto m = map_id(grules, e.gid, name)) {
                    to = *m;
                } else if (by_name && !name.empty()) {
                    if (auto id = ctx.ids().group_id(name)) to = *id;
                }
                gmap[e.gid] = to;
            }
        }
        for (auto& e : r.list) {
            e.uid = umap[e.uid];
            e.gid = gmap[e.gid];
        }
        if (std::string f = ctx.ids().take_failure(); !f.empty()) ctx.error(f);
    }
    protocol::sort_file_list(r.list);
    protocol::clean_file_list(r.list);
    if (r.list.empty()) return {};

    std::string dest_arg =
        o.paths.empty() ? std::string() : module_relative_arg(ctx.module->name, unbackslash(o.paths[0]));
    choose_destination(r, dest_arg);
    if (!o.basis_dirs.empty()) {
        if (auto b = r.resolve_basis_dirs(); !b) return b;
    }
    if (auto p = r.resolve_partial_dirs(); !p) return p;
    r.plan_hardlinks();

    Result<void> gen_result;
    std::atomic<bool> gen_failed_first{false};
    std::thread gen([&] {
        gen_result = r.generate();
        if (!gen_result && !r.abort) {
            // Unblock the receiver's read: the session ends with the generator's error.
            gen_failed_first = true;
            ::shutdown(ctx.in_fd, SHUT_RD);
        }
    });
    Result<void> recv_result = r.receive();
    if (!recv_result) {
        r.abort = true;
        r.events.push({RecvEvent::failed, 0});
    }
    gen.join();
    if (gen_failed_first) return gen_result;
    if (!recv_result) return recv_result;
    return gen_result;
}

}  // namespace sfs::server::rsync
