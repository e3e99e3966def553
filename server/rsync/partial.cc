// --partial-dir, --delay-updates and --temp-dir on a push (rsync util1.c partial_dir_fname,
// handle_partial_dir; receiver.c handle_delayed_updates; options.c).
//
// Design note. Every path here is module-relative and goes through ModuleRoot (openat2
// RESOLVE_BENEATH), so a partial or temp dir may be (or pass through) a symlink inside the
// module, as with rsyncd, but never one leading out of it. As in rsync the module's filter
// is applied by name: a partial file whose directory or name the module excludes is not
// used (the file is then handled as without a partial dir), and an absolute partial dir or
// a temp dir the filter excludes refuses the options outright.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "server/rsync/push.h"

namespace sfs::server::rsync {

std::string Push::partial_path(const std::string& path) const {
    const std::string& pd = o().partial_dir;
    if (pd.empty()) return {};
    std::string dir = resolve_under(pd.front() == '/' ? std::string() : parent_of(path), pd);
    std::string file = join_path(dir, base_of(path));
    if (ctx.daemon_excluded(dir, true) || ctx.daemon_excluded(file, false)) return {};
    return file;
}

bool Push::make_partial_dir(const std::string& ppath) {
    std::string dir = parent_of(ppath);
    if (dir == ".") return true;
    auto st = ctx.root.lstat(dir);
    if (st && S_ISDIR(st->st_mode)) return true;
    if (st && S_ISLNK(st->st_mode)) {
        // Followed when it leads to a directory inside the module (name-based filters, as
        // rsync); a link out of the module, or to a non-directory, is never replaced.
        return static_cast<bool>(ctx.root.open_beneath(dir, O_PATH | O_DIRECTORY | O_CLOEXEC));
    }
    std::string base;
    auto parent = ctx.root.open_parent(dir, base);
    if (!parent) return false;
    if (st && unlinkat(parent->get(), base.c_str(), 0) < 0) return false;
    return mkdirat(parent->get(), base.c_str(), 0700) == 0 || errno == EEXIST;
}

void Push::remove_partial(const std::string& ppath) {
    std::string base;
    auto dir = ctx.root.open_parent(ppath, base);
    if (!dir) return;
    unlinkat(dir->get(), base.c_str(), 0);
    // An absolute partial dir is the operator's (rsync leaves it); a relative one per
    // directory is removed once empty (rmdir fails harmlessly otherwise).
    if (o().partial_dir.front() == '/') return;
    std::string pdir = parent_of(ppath), pbase;
    auto pparent = ctx.root.open_parent(pdir, pbase);
    if (pparent) unlinkat(pparent->get(), pbase.c_str(), AT_REMOVEDIR);
}

Result<void> Push::resolve_partial_dirs() {
    auto excluded_dir = [this](const std::string& dir) {
        for (std::size_t s = dir.find('/'); s != std::string::npos; s = dir.find('/', s + 1))
            if (ctx.daemon_excluded(dir.substr(0, s), true)) return true;
        return ctx.daemon_excluded(dir, true);
    };
    if (!o().partial_dir.empty() && o().partial_dir.front() == '/' && excluded_dir(resolve_under("", o().partial_dir)))
        return fail("Your options have been rejected by the server.");
    if (!o().partial_dir.empty() && o().partial_dir.front() != '/') {
        // rsync hides a relative partial dir from the transfer (and from --delete).
        ctx.filters.add("- " + o().partial_dir + "/");
    }
    if (!o().temp_dir.empty()) {
        temp_dir = resolve_under(dest_dir(), o().temp_dir);
        if (excluded_dir(temp_dir)) return fail("Your options have been rejected by the server.");
    }
    return {};
}

bool Push::move_into_place(int tdir, const std::string& tmp, const std::string& tmp_path, const std::string& to,
                           const FileEntry& e) {
    std::string base;
    auto dir = ctx.root.open_parent(to, base);
    if (!dir) {
        ctx.error("rsync: rename \"" + tmp_path + "\" -> \"" + to + "\": " + errstr(dir.error()));
        unlinkat(tdir, tmp.c_str(), 0);
        return false;
    }
    if (renameat(tdir, tmp.c_str(), dir->get(), base.c_str()) == 0) return true;
    int err = errno;
    if (err == EXDEV && copy_local(tmp_path, to, e)) {
        unlinkat(tdir, tmp.c_str(), 0);
        return true;
    }
    ctx.error("rsync: rename \"" + tmp_path + "\" -> \"" + to + "\": " + errstr(err));
    unlinkat(tdir, tmp.c_str(), 0);
    return false;
}

void Push::finish_delayed() {
    for (const auto& [ppath, ndx] : delayed) {
        const FileEntry& e = list[static_cast<std::size_t>(ndx)];
        std::string path = path_of(e);
        std::string pbase, base;
        auto pdir = ctx.root.open_parent(ppath, pbase);
        auto dir = ctx.root.open_parent(path, base);
        if (!pdir || !dir) {
            ctx.error("rsync: rename \"" + ppath + "\" -> \"" + path + "\": " + errstr(!pdir ? pdir.error() : dir.error()));
            continue;
        }
        struct stat st {};
        if (fstatat(dir->get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            !make_backup(dir->get(), base, local_name.empty() ? e.name : local_name))
            continue;
        if (renameat(pdir->get(), pbase.c_str(), dir->get(), base.c_str()) < 0) {
            ctx.error("rsync: rename \"" + ppath + "\" -> \"" + path + "\": " + errstr(errno));
            continue;
        }
        report_success(ndx, true);
        if (o().partial_dir.front() != '/') {
            std::string d = parent_of(ppath), dbase;
            auto dparent = ctx.root.open_parent(d, dbase);
            if (dparent) unlinkat(dparent->get(), dbase.c_str(), AT_REMOVEDIR);
        }
    }
    delayed.clear();
}

}  // namespace sfs::server::rsync
