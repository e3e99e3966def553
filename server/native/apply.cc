// Namespace/attribute mutations on the mirror. Rules (docs/protocol.md §4):
//  - resolve the parent beneath the root, act on the final name with *at() calls that never
//    follow a final symlink;
//  - new nodes of every type except directories are built under a temp name and renamed over
//    the final name: a replay or a leftover node of another type is replaced atomically and
//    a reader never sees a half-made node;
//  - "already done" outcomes of a replay (mkdir of an existing dir, unlink of a missing name,
//    rename whose source is gone but whose target exists, link that already exists) succeed.
#include "server/native/apply.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fmt/format.h"
#include "server/native/resolve.h"

namespace sfs::server::native {

namespace pn = protocol::native;

void DurableSet::add(std::string_view path) {
    if (overflow_) return;
    if (paths_.size() >= kMaxTracked) {
        overflow_ = true;
        paths_.clear();
        return;
    }
    paths_.emplace(path);
}

void DurableSet::add_parent(std::string_view path) {
    auto slash = path.rfind('/');
    add(slash == std::string_view::npos ? std::string_view() : path.substr(0, slash));
}

void DurableSet::rename(std::string_view from, std::string_view to) {
    if (overflow_) return;
    std::vector<std::string> moved;
    for (auto it = paths_.begin(); it != paths_.end();) {
        const std::string& p = *it;
        if (p.size() >= from.size() && p.compare(0, from.size(), from) == 0 &&
            (p.size() == from.size() || p[from.size()] == '/')) {
            moved.push_back(std::string(to) + p.substr(from.size()));
            it = paths_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& m : moved) paths_.insert(std::move(m));
}

std::unexpected<Error> op_error(std::string_view what, std::string_view path, int err) {
    return std::unexpected<Error>(Error{fmt::format("{} \"{}\": {}", what, path, std::strerror(err)), err});
}

std::string temp_name(std::string_view name, std::mt19937_64& rng) {
    // 1 + 200 + 5 + 16 = 222 <= NAME_MAX
    return fmt::format(".{}.sfs.{:016x}", name.substr(0, 200), rng());
}

namespace {

// The module-relative path an error names: "" reads better as "." in messages.
std::string_view shown(std::string_view path) { return path.empty() ? std::string_view(".") : path; }

SysResult<struct stat> lstat_at(int dir, const std::string& name) {
    struct stat st{};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
    return st;
}

// chmod without following a final symlink. glibc implements AT_SYMLINK_NOFOLLOW through an
// O_PATH fd and /proc; it answers EOPNOTSUPP for a symlink (whose mode Linux ignores anyway)
// and when /proc is absent (chroot), where we fall back to a checked plain fchmodat.
SysResult<void> chmod_nofollow(int dir, const std::string& name, mode_t mode) {
    if (::fchmodat(dir, name.c_str(), mode, AT_SYMLINK_NOFOLLOW) == 0) return {};
    if (errno != EOPNOTSUPP) return last_errno();
    auto st = lstat_at(dir, name);
    if (!st) return std::unexpected(st.error());
    if (S_ISLNK(st->st_mode)) return {};
    if (::fchmodat(dir, name.c_str(), mode, 0) != 0) return last_errno();
    return {};
}

SysResult<void> chown_nofollow(const ApplyContext& ctx, int dir, const std::string& name, uid_t uid, gid_t gid) {
    if (!ctx.am_root) return {};  // like rsync without root: ownership is not ours to set
    if (::fchownat(dir, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0) return last_errno();
    return {};
}

// Renames the temp node over the final name; removes the temp on failure.
SysResult<void> commit_temp(int dir, const std::string& tmp, const std::string& name) {
    if (::renameat(dir, tmp.c_str(), dir, name.c_str()) != 0) {
        int err = errno;
        ::unlinkat(dir, tmp.c_str(), 0);
        return std::unexpected(err);
    }
    return {};
}

// Opens the node itself (not following a final symlink) for xattr calls. Regular files and
// directories are opened read-only; other types (symlinks, fifos, devices) through an O_PATH
// fd whose /proc/self/fd link is then used by path (the kernel resolves that magic link to
// exactly the node we opened).
struct NodeHandle {
    UniqueFd fd;
    std::string proc_path;  // non-empty: use the *xattr(path) calls on this
};
SysResult<NodeHandle> open_node(int root, std::string_view path) {
    auto opath = open_beneath(root, path, O_PATH | O_NOFOLLOW);
    if (!opath) return std::unexpected(opath.error());
    struct stat st{};
    if (::fstat(opath->get(), &st) != 0) return last_errno();
    NodeHandle h;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        auto fd = open_beneath(root, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd) {
            struct stat st2{};
            if (::fstat(fd->get(), &st2) == 0 && st2.st_ino == st.st_ino && st2.st_dev == st.st_dev) {
                h.fd = std::move(*fd);
                return h;
            }
        }
    }
    h.proc_path = fmt::format("/proc/self/fd/{}", opath->get());
    h.fd = std::move(*opath);
    return h;
}

// ENOENT from a /proc/self/fd path means /proc is missing (chroot), not the node: say so.
int proc_errno(const NodeHandle& h, int err) {
    if (err == ENOENT && !h.proc_path.empty() && ::access("/proc/self/fd", F_OK) != 0) return EOPNOTSUPP;
    return err;
}

}  // namespace

Result<void> set_owner_mode(const ApplyContext& ctx, int fd, std::uint32_t uid, std::uint32_t gid,
                            std::uint32_t mode, std::string_view what, std::string_view path) {
    // Owner first: chown clears set-id bits, which the mode then restores.
    if (ctx.am_root && ::fchown(fd, uid, gid) != 0) return op_error(fmt::format("{} (chown)", what), path, errno);
    if (::fchmod(fd, mode & 07777) != 0) return op_error(fmt::format("{} (chmod)", what), path, errno);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Mkdir& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("mkdir", op.path, p.error());
    if (::mkdirat(p->parent.get(), p->name.c_str(), 0700) != 0) {
        int err = errno;
        if (err != EEXIST) return op_error("mkdir", op.path, err);
        auto st = lstat_at(p->parent.get(), p->name);
        if (!st) return op_error("mkdir", op.path, st.error());
        if (!S_ISDIR(st->st_mode)) return op_error("mkdir", op.path, EEXIST);  // never replace a file by a dir
    }
    if (auto r = chown_nofollow(ctx, p->parent.get(), p->name, op.uid, op.gid); !r) return op_error("mkdir (chown)", op.path, r.error());
    if (auto r = chmod_nofollow(p->parent.get(), p->name, op.mode); !r) return op_error("mkdir (chmod)", op.path, r.error());
    ctx.touched->add(op.path);
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Create& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("create", op.path, p.error());
    std::string tmp = temp_name(p->name, *ctx.rng);
    int fd = ::openat(p->parent.get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return op_error("create", op.path, errno);
    UniqueFd file(fd);
    if (auto r = set_owner_mode(ctx, file.get(), op.uid, op.gid, op.mode, "create", op.path); !r) {
        ::unlinkat(p->parent.get(), tmp.c_str(), 0);
        return r;
    }
    if (auto r = commit_temp(p->parent.get(), tmp, p->name); !r) return op_error("create", op.path, r.error());
    ctx.touched->add(op.path);
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Mknod& op) {
    const mode_t type = op.mode & S_IFMT;
    if (type == S_IFREG) return apply(ctx, pn::Create{op.seq, op.path, op.mode & 07777, op.uid, op.gid});
    if ((type == S_IFCHR || type == S_IFBLK) && !ctx.am_root) return op_error("mknod", op.path, EPERM);
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("mknod", op.path, p.error());
    std::string tmp = temp_name(p->name, *ctx.rng);
    if (::mknodat(p->parent.get(), tmp.c_str(), type | 0600, static_cast<dev_t>(op.rdev)) != 0)
        return op_error("mknod", op.path, errno);
    // The temp node is ours and not a symlink: plain *at() calls on it are safe.
    if (ctx.am_root && ::fchownat(p->parent.get(), tmp.c_str(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        ::unlinkat(p->parent.get(), tmp.c_str(), 0);
        return op_error("mknod (chown)", op.path, err);
    }
    if (::fchmodat(p->parent.get(), tmp.c_str(), op.mode & 07777, 0) != 0) {
        int err = errno;
        ::unlinkat(p->parent.get(), tmp.c_str(), 0);
        return op_error("mknod (chmod)", op.path, err);
    }
    if (auto r = commit_temp(p->parent.get(), tmp, p->name); !r) return op_error("mknod", op.path, r.error());
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Symlink& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("symlink", op.path, p.error());
    std::string target = ctx.munge_symlinks ? std::string(kMungePrefix) + op.target : op.target;
    if (target.size() > pn::kMaxSymlinkTarget) return op_error("symlink", op.path, ENAMETOOLONG);
    std::string tmp = temp_name(p->name, *ctx.rng);
    if (::symlinkat(target.c_str(), p->parent.get(), tmp.c_str()) != 0) return op_error("symlink", op.path, errno);
    if (auto r = chown_nofollow(ctx, p->parent.get(), tmp, op.uid, op.gid); !r) {
        ::unlinkat(p->parent.get(), tmp.c_str(), 0);
        return op_error("symlink (chown)", op.path, r.error());
    }
    if (auto r = commit_temp(p->parent.get(), tmp, p->name); !r) return op_error("symlink", op.path, r.error());
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Link& op) {
    auto from = resolve_parent(ctx.root, op.existing);
    if (!from) return op_error("link (existing)", op.existing, from.error());
    auto to = resolve_parent(ctx.root, op.path);
    if (!to) return op_error("link", op.path, to.error());
    if (::linkat(from->parent.get(), from->name.c_str(), to->parent.get(), to->name.c_str(), 0) != 0) {
        int err = errno;
        auto src = lstat_at(from->parent.get(), from->name);
        auto dst = lstat_at(to->parent.get(), to->name);
        if (err == ENOENT && !src && dst) {
            // Replay: the existing name is gone (unlinked by a later op) but the link was made.
        } else if (err == EEXIST && src && dst && src->st_ino == dst->st_ino && src->st_dev == dst->st_dev) {
            // Replay: already linked.
        } else if (err == EEXIST && src) {
            // Another node holds the name: the source replaced it, so do we (atomically).
            std::string tmp = temp_name(to->name, *ctx.rng);
            if (::linkat(from->parent.get(), from->name.c_str(), to->parent.get(), tmp.c_str(), 0) != 0)
                return op_error("link", op.path, errno);
            if (auto r = commit_temp(to->parent.get(), tmp, to->name); !r) return op_error("link", op.path, r.error());
        } else {
            return op_error("link", op.path, err);
        }
    }
    ctx.touched->add(op.path);
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Rename& op) {
    auto from = resolve_parent(ctx.root, op.from);
    if (!from) return op_error("rename (from)", op.from, from.error());
    auto to = resolve_parent(ctx.root, op.to);
    if (!to) return op_error("rename (to)", op.to, to.error());
    if (::renameat2(from->parent.get(), from->name.c_str(), to->parent.get(), to->name.c_str(), op.flags) != 0) {
        int err = errno;
        bool replay = false;
        if (err == ENOENT && !(op.flags & pn::kRenameExchange)) {
            // Replay: the source is gone and the target exists (it was moved there before).
            auto src = lstat_at(from->parent.get(), from->name);
            auto dst = lstat_at(to->parent.get(), to->name);
            replay = !src && src.error() == ENOENT && dst.has_value();
        }
        if (!replay) return op_error(fmt::format("rename to \"{}\"", op.to), op.from, err);
    }
    ctx.touched->rename(op.from, op.to);
    ctx.touched->add_parent(op.from);
    ctx.touched->add_parent(op.to);
    ctx.touched->add(op.to);
    if (op.flags & pn::kRenameExchange) ctx.touched->add(op.from);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Unlink& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) {
        if (p.error() == ENOENT) return {};  // parent gone: so is the name (replay)
        return op_error("unlink", op.path, p.error());
    }
    if (::unlinkat(p->parent.get(), p->name.c_str(), 0) != 0 && errno != ENOENT) return op_error("unlink", op.path, errno);
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Rmdir& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) {
        if (p.error() == ENOENT) return {};
        return op_error("rmdir", op.path, p.error());
    }
    if (::unlinkat(p->parent.get(), p->name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
        return op_error("rmdir", op.path, errno);
    ctx.touched->add_parent(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Setattr& op) {
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("setattr", shown(op.path), p.error());
    if (op.mask & pn::kAttrSize) {
        auto fd = open_beneath(ctx.root, op.path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (!fd) return op_error("truncate", shown(op.path), fd.error());
        if (::ftruncate(fd->get(), static_cast<off_t>(op.size)) != 0) return op_error("truncate", shown(op.path), errno);
    }
    if (op.mask & (pn::kAttrUid | pn::kAttrGid)) {
        uid_t uid = (op.mask & pn::kAttrUid) ? op.uid : static_cast<uid_t>(-1);
        gid_t gid = (op.mask & pn::kAttrGid) ? op.gid : static_cast<gid_t>(-1);
        if (auto r = chown_nofollow(ctx, p->parent.get(), p->name, uid, gid); !r) return op_error("chown", shown(op.path), r.error());
    }
    if (op.mask & pn::kAttrMode) {
        if (auto r = chmod_nofollow(p->parent.get(), p->name, op.mode); !r) return op_error("chmod", shown(op.path), r.error());
    }
    if (op.mask & (pn::kAttrAtime | pn::kAttrMtime)) {
        struct timespec ts[2];
        ts[0] = (op.mask & pn::kAttrAtime) ? timespec{op.atime.sec, static_cast<long>(op.atime.nsec)} : timespec{0, UTIME_OMIT};
        ts[1] = (op.mask & pn::kAttrMtime) ? timespec{op.mtime.sec, static_cast<long>(op.mtime.nsec)} : timespec{0, UTIME_OMIT};
        if (::utimensat(p->parent.get(), p->name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
            return op_error("utimes", shown(op.path), errno);
    }
    ctx.touched->add(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Setxattr& op) {
    auto h = open_node(ctx.root, op.path);
    if (!h) return op_error(fmt::format("setxattr {}", op.name), shown(op.path), h.error());
    int rc = h->proc_path.empty() ? ::fsetxattr(h->fd.get(), op.name.c_str(), op.value.data(), op.value.size(), 0)
                                  : ::setxattr(h->proc_path.c_str(), op.name.c_str(), op.value.data(), op.value.size(), 0);
    if (rc != 0) return op_error(fmt::format("setxattr {}", op.name), shown(op.path), proc_errno(*h, errno));
    ctx.touched->add(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::Removexattr& op) {
    auto h = open_node(ctx.root, op.path);
    if (!h) return op_error(fmt::format("removexattr {}", op.name), shown(op.path), h.error());
    int rc = h->proc_path.empty() ? ::fremovexattr(h->fd.get(), op.name.c_str())
                                  : ::removexattr(h->proc_path.c_str(), op.name.c_str());
    if (rc != 0 && errno != ENODATA)
        return op_error(fmt::format("removexattr {}", op.name), shown(op.path), proc_errno(*h, errno));
    ctx.touched->add(op.path);
    return {};
}

Result<void> apply(const ApplyContext& ctx, const pn::WriteRange& op) {
    // O_NONBLOCK: a fifo at the path fails (ENXIO) instead of hanging the session.
    auto fd = open_beneath(ctx.root, op.path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (!fd) return op_error("write", op.path, fd.error());
    struct stat st{};
    if (::fstat(fd->get(), &st) != 0) return op_error("write", op.path, errno);
    if (!S_ISREG(st.st_mode)) return op_error("write", op.path, EINVAL);
    std::size_t done = 0;
    while (done < op.data.size()) {
        ssize_t n = ::pwrite(fd->get(), op.data.data() + done, op.data.size() - done, static_cast<off_t>(op.offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return op_error("write", op.path, errno);
        }
        done += static_cast<std::size_t>(n);
    }
    ctx.touched->add(op.path);
    return {};
}

}  // namespace sfs::server::native
