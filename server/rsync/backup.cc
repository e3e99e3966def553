// -b / --backup-dir / --suffix on a push (rsync backup.c make_backup()): before a received
// file replaces an existing one, and instead of deleting a file, the old entry is moved to
//   DEST/NAME + suffix                   (no --backup-dir; suffix "~" by default)
//   BACKUP_DIR/NAME + suffix             (--backup-dir; suffix "" by default)
// A relative --backup-dir is relative to the destination directory, an absolute one to the
// module root (the daemon's view, as rsyncd sanitizes it); ".." never climbs above the
// module root. Missing directories of the backup path are created. Every step goes
// through ModuleRoot (openat2 beneath the root), so a backup cannot be written outside
// the module, even through a symlink planted in the backup dir.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "server/rsync/push.h"

namespace sfs::server::rsync {

namespace {

// Module-relative normal form: no empty, "." components; ".." pops (never above the root).
std::string normalize(const std::string& path) {
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i <= path.size()) {
        std::size_t j = path.find('/', i);
        if (j == std::string::npos) j = path.size();
        std::string c = path.substr(i, j - i);
        i = j + 1;
        if (c.empty() || c == ".") continue;
        if (c == "..") {
            if (!parts.empty()) parts.pop_back();
            continue;
        }
        parts.push_back(std::move(c));
    }
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
    return out.empty() ? std::string(".") : out;
}

}  // namespace

std::string Push::backup_path(const std::string& rel_to_dest) const {
    const ServerOptions& op = o();
    if (op.backup_dir.empty()) return normalize(join_path(dest, rel_to_dest)) + op.suffix;
    std::string root = op.backup_dir.front() == '/' ? normalize(op.backup_dir) : normalize(join_path(dest, op.backup_dir));
    return normalize(join_path(root, rel_to_dest)) + op.suffix;
}

// Creates the directories above `path` (module-relative) that do not exist yet.
bool Push::make_backup_parents(const std::string& path) {
    std::string done;
    std::size_t i = 0;
    for (;;) {
        std::size_t j = path.find('/', i);
        if (j == std::string::npos) return true;
        done = path.substr(0, j);
        i = j + 1;
        auto st = ctx.root.lstat(done);
        if (st && S_ISDIR(st->st_mode)) continue;
        std::string base;
        auto parent = ctx.root.open_parent(done, base);
        if (!parent || (mkdirat(parent->get(), base.c_str(), 0755) < 0 && errno != EEXIST)) {
            ctx.error("rsync: backup: mkdir \"" + done + "\" (in " + ctx.module->name + ") failed: " +
                      errstr(parent ? errno : parent.error()));
            return false;
        }
    }
}

bool Push::make_backup(int parent, const std::string& name, const std::string& rel_to_dest, bool copy) {
    if (!o().backup) return true;
    struct stat st {};
    if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT;
    if (S_ISDIR(st.st_mode)) return true;   // directories are not backed up (rsync neither)
    const std::string target = backup_path(rel_to_dest);
    if (ctx.daemon_path_excluded(target)) {
        ctx.error("ERROR: backup path \"" + target + "\" is excluded by the daemon (in " + ctx.module->name + ")");
        return false;
    }
    if (!make_backup_parents(target)) return false;
    std::string tbase;
    auto tdir = ctx.root.open_parent(target, tbase);
    if (!tdir) {
        ctx.error("rsync: backup \"" + target + "\" (in " + ctx.module->name + ") failed: " + errstr(tdir.error()));
        return false;
    }
    // An old backup of the same name is replaced; a directory there is left alone.
    struct stat old {};
    if (fstatat(tdir->get(), tbase.c_str(), &old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(old.st_mode)) {
        ctx.error("rsync: backup \"" + target + "\": a directory is in the way");
        return false;
    }
    if (!copy) {
        if (renameat(parent, name.c_str(), tdir->get(), tbase.c_str()) == 0) return true;
        if (errno != EXDEV || !S_ISREG(st.st_mode)) {
            ctx.error("rsync: backup rename \"" + rel_to_dest + "\" -> \"" + target + "\" failed: " + errstr(errno));
            return false;
        }
    }
    // --inplace (the file is about to be rewritten in place) or another file system: copy.
    if (!S_ISREG(st.st_mode)) return true;
    UniqueFd in(openat(parent, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    std::string tmp = "." + tbase.substr(0, 200) + ".bak";
    unlinkat(tdir->get(), tmp.c_str(), 0);
    UniqueFd out(openat(tdir->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    bool ok = in && out;
    char buf[65536];
    while (ok) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            ok = n == 0;
            break;
        }
        for (ssize_t w = 0; ok && w < n;) {
            ssize_t k = ::write(out.get(), buf + w, static_cast<std::size_t>(n - w));
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) ok = false;
            else w += k;
        }
    }
    if (ok) {
        (void)fchmod(out.get(), st.st_mode & 07777);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        (void)futimens(out.get(), ts);
        ok = renameat(tdir->get(), tmp.c_str(), tdir->get(), tbase.c_str()) == 0;
    }
    if (!ok) {
        ctx.error("rsync: backup copy \"" + rel_to_dest + "\" -> \"" + target + "\" failed: " + errstr(errno));
        unlinkat(tdir->get(), tmp.c_str(), 0);
        return false;
    }
    if (!copy) unlinkat(parent, name.c_str(), 0);
    return true;
}

}  // namespace sfs::server::rsync
