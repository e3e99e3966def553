// --link-dest / --copy-dest / --compare-dest on a push (rsync generator.c try_dests_reg,
// main.c check_alt_basis_dirs).
//
// Design note. Each DIR is resolved once the destination is known: relative to the
// destination directory, an absolute one relative to the module root, and ".." never climbs
// above the module root (rsync's sanitize_path with the destination's depth). Every lookup
// below it goes through ModuleRoot (openat2 RESOLVE_BENEATH), so a basis dir that is, or
// passes through, a symlink leading out of the module finds nothing instead of reading,
// linking or copying a file from outside. For each regular file of the list the basis dirs
// are tried in order; the best match wins:
//   level 1  a regular file of that name  -> it is the delta basis (its block sums are sent);
//   level 2  it also passes the quick check -> copied locally (no data on the wire);
//   level 3  its preserved attributes match too -> --link-dest hard-links it (a copy when
//            linking fails, e.g. EXDEV), --compare-dest leaves the file out of the
//            destination, --copy-dest copies it.
// An existing destination file is only replaced by a level-3 match (and not by
// --copy-dest), as rsync's find_exact_for_existing does.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>

#include "server/rsync/push.h"

namespace sfs::server::rsync {

std::string resolve_under(const std::string& dest_dir, const std::string& arg) {
    std::vector<std::string> parts;
    auto add = [&parts](const std::string& p) {
        std::size_t i = 0;
        while (i <= p.size()) {
            std::size_t j = p.find('/', i);
            if (j == std::string::npos) j = p.size();
            std::string comp = p.substr(i, j - i);
            i = j + 1;
            if (comp.empty() || comp == ".") continue;
            if (comp == "..") {
                if (!parts.empty()) parts.pop_back();
                continue;
            }
            parts.push_back(std::move(comp));
        }
    };
    if (arg.empty() || arg[0] != '/') add(dest_dir);
    add(arg);
    std::string out;
    for (const auto& c : parts) out += (out.empty() ? "" : "/") + c;
    return out.empty() ? "." : out;
}

std::string Push::basis_for(std::int32_t ndx) {
    std::lock_guard l(basis_mu);
    auto it = basis_of.find(ndx);
    return it == basis_of.end() ? std::string() : it->second;
}

Result<void> Push::resolve_basis_dirs() {
    const char* opt = alt_dest_name(o().alt_dest);
    for (const auto& arg : o().basis_dirs) {
        std::string dir = resolve_under(dest_dir(), arg);
        // A basis dir the module's filter hides is refused like rsync does, before any
        // file below it is looked at.
        bool excluded = false;
        for (std::size_t s = dir.find('/'); s != std::string::npos && !excluded; s = dir.find('/', s + 1))
            excluded = ctx.daemon_excluded(dir.substr(0, s), true);
        if (excluded || ctx.daemon_excluded(dir, true))
            return fail("Your options have been rejected by the server.");
        auto st = ctx.root.open_beneath(dir, O_PATH | O_CLOEXEC);
        struct stat sb {};
        if (!st || fstat(st->get(), &sb) < 0)
            ctx.info(std::string(opt) + " arg does not exist: " + dir);
        else if (!S_ISDIR(sb.st_mode))
            ctx.info(std::string(opt) + " arg is not a dir: " + dir);
        basis_dirs.push_back(std::move(dir));
    }
    return {};
}

bool Push::unchanged_attrs(const FileEntry& e, const struct stat& st) const {
    if (o().times && st.st_mtime != e.mtime) return false;
    if (o().perms && (st.st_mode & 07777) != (e.mode & 07777)) return false;
    // Owners are only preserved (and so only compared) when the module runs as root.
    if (am_root() && o().owner && st.st_uid != static_cast<uid_t>(e.uid)) return false;
    if (am_root() && o().group && st.st_gid != static_cast<gid_t>(e.gid)) return false;
    return true;
}

bool Push::copy_local(const std::string& from, const std::string& to, const FileEntry& e) {
    auto src = ctx.root.open_beneath(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sst {};
    if (!src || fstat(src->get(), &sst) < 0 || !S_ISREG(sst.st_mode)) return false;
    std::string base;
    auto dir = ctx.root.open_parent(to, base);
    if (!dir) return false;
    static thread_local std::mt19937 rng{std::random_device{}()};
    std::string tmp;
    UniqueFd out;
    for (int tries = 0; tries < 100 && !out; ++tries) {
        char suffix[8];
        std::snprintf(suffix, sizeof suffix, "%06x", static_cast<unsigned>(rng() & 0xFFFFFF));
        tmp = "." + base.substr(0, 200) + "." + suffix;
        int f = openat(dir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f >= 0) out.reset(f);
        else if (errno != EEXIST) break;
    }
    if (!out) {
        ctx.error("rsync: open \"" + to + "\" (in " + ctx.module->name + ") failed: " + errstr(errno));
        return false;
    }
    std::vector<std::uint8_t> buf(256 * 1024);
    std::int64_t off = 0;
    bool ok = true;
    for (;;) {
        std::size_t n = read_at(src->get(), buf.data(), buf.size(), off);
        if (n == 0) break;
        std::size_t done = 0;
        while (done < n) {
            ssize_t w = pwrite(out.get(), buf.data() + done, n - done, off + static_cast<std::int64_t>(done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                ok = false;
                break;
            }
            done += static_cast<std::size_t>(w);
        }
        if (!ok) break;
        off += static_cast<std::int64_t>(n);
    }
    if (!ok) {
        ctx.error("rsync: copy \"" + from + "\" -> \"" + to + "\" failed: " + errstr(errno));
        unlinkat(dir->get(), tmp.c_str(), 0);
        return false;
    }
    set_fd_attrs(out.get(), e, false, 0);
    if (renameat(dir->get(), tmp.c_str(), dir->get(), base.c_str()) < 0) {
        ctx.error("rsync: rename \"" + tmp + "\" -> \"" + to + "\": " + errstr(errno));
        unlinkat(dir->get(), tmp.c_str(), 0);
        return false;
    }
    return true;
}

Push::AltResult Push::try_alt_dests(std::int32_t ndx, const std::string& path, bool exists, const struct stat& st) {
    const FileEntry& e = list[static_cast<std::size_t>(ndx)];
    const std::string rel = rel_name(e);
    int level = 0;
    std::size_t best = 0;
    struct stat best_st {};
    for (std::size_t j = 0; j < basis_dirs.size(); ++j) {
        std::string cmp = join_path(basis_dirs[j], rel);
        auto cst = ctx.root.lstat(cmp);
        if (!cst || !S_ISREG(cst->st_mode)) continue;
        if (level == 0) best = j, level = 1, best_st = *cst;
        if (!up_to_date(cmp, e, *cst)) continue;
        if (level == 1) best = j, level = 2, best_st = *cst;
        if (unchanged_attrs(e, *cst)) {
            best = j, level = 3, best_st = *cst;
            break;
        }
    }
    if (level == 0) return AltResult::none;
    const std::string cmp = join_path(basis_dirs[best], rel);
    const auto kind = o().alt_dest;
    bool try_copy = false;
    if (level == 3 && kind != ServerOptions::AltDest::copy) {
        if (exists) {
            if (kind == ServerOptions::AltDest::link && st.st_dev == best_st.st_dev && st.st_ino == best_st.st_ino)
                return AltResult::none;   // already the same file: the quick check fixes attrs
            if (!o().dry_run) {
                std::string base;
                auto dir = ctx.root.open_parent(path, base);
                if (!dir || (unlinkat(dir->get(), base.c_str(), 0) < 0 && errno != ENOENT)) return AltResult::none;
            }
        }
        if (kind == ServerOptions::AltDest::compare || o().dry_run) return AltResult::handled;
        std::string bbase, dbase;
        auto bdir = ctx.root.open_parent(cmp, bbase);
        auto ddir = ctx.root.open_parent(path, dbase);
        if (bdir && ddir) {
            std::string tmp = "." + dbase.substr(0, 200) + ".hlink." + std::to_string(::getpid());
            unlinkat(ddir->get(), tmp.c_str(), 0);
            if (linkat(bdir->get(), bbase.c_str(), ddir->get(), tmp.c_str(), 0) == 0) {
                if (renameat(ddir->get(), tmp.c_str(), ddir->get(), dbase.c_str()) == 0) return AltResult::handled;
                unlinkat(ddir->get(), tmp.c_str(), 0);
            }
        }
        try_copy = true;   // rsync: "try_a_copy" when the hard link fails (EXDEV, EMLINK, ...)
    }
    if (!try_copy && exists) return AltResult::none;
    if (try_copy || level >= 2) {
        if (o().dry_run) return AltResult::handled;
        return copy_local(cmp, path, e) ? AltResult::handled : AltResult::none;
    }
    std::lock_guard l(basis_mu);
    basis_of[ndx] = cmp;
    return AltResult::basis;
}

}  // namespace sfs::server::rsync
