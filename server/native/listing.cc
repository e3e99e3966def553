#include "server/native/listing.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"
#include "common/xattrs.h"
#include "fmt/format.h"
#include "protocol/native/content_hash.h"
#include "protocol/native/xattr_summary.h"
#include "server/native/apply.h"
#include "server/native/resolve.h"

namespace sfs::server::native {

namespace pn = protocol::native;

namespace {

constexpr int kMaxDepth = 1024;

pn::NodeType node_type(mode_t mode) {
    switch (mode & S_IFMT) {
        case S_IFDIR: return pn::NodeType::Directory;
        case S_IFLNK: return pn::NodeType::Symlink;
        case S_IFIFO: return pn::NodeType::Fifo;
        case S_IFSOCK: return pn::NodeType::Socket;
        case S_IFCHR: return pn::NodeType::CharDev;
        case S_IFBLK: return pn::NodeType::BlockDev;
        default: return pn::NodeType::Regular;
    }
}

class Walker {
public:
    Walker(const pn::ListRequest& req, const ListOptions& options,
           const std::function<Result<void>(pn::ListEntry&&)>& emit)
        : req_(req), options_(options), emit_(emit) {}

    // Emits the entry of `name` in `dir` (path = its module-relative path) and, for a
    // directory when recursive, its subtree. Returns an error only when emit failed.
    Result<void> visit(int dir, const std::string& name, const std::string& path, int depth, bool is_top) {
        struct stat st{};
        if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (is_top) return op_error("list", path.empty() ? "." : path, errno);
            if (errno != ENOENT) note(path, errno);
            return {};
        }
        if (S_ISDIR(st.st_mode) && options_.skip && options_.skip->first == st.st_dev && options_.skip->second == st.st_ino)
            return {};
        if (path.size() > pn::kMaxPath) {
            note(path.substr(0, 64) + "...", ENAMETOOLONG);
            return {};
        }
        pn::ListEntry e;
        e.path = path;
        e.type = node_type(st.st_mode);
        e.mode = st.st_mode;
        e.uid = st.st_uid;
        e.gid = st.st_gid;
        e.size = static_cast<std::uint64_t>(st.st_size);
        e.mtime = {st.st_mtim.tv_sec, static_cast<std::uint32_t>(st.st_mtim.tv_nsec)};
        e.rdev = st.st_rdev;
        e.nlink = static_cast<std::uint32_t>(st.st_nlink);
        e.ino = st.st_ino;
        if (S_ISLNK(st.st_mode)) {
            char buf[pn::kMaxSymlinkTarget + 1];
            ssize_t n = ::readlinkat(dir, name.c_str(), buf, sizeof buf);
            if (n < 0 || static_cast<std::size_t>(n) > pn::kMaxSymlinkTarget) {
                if (n >= 0 || errno != ENOENT) note(path, n < 0 ? errno : ENAMETOOLONG);
                return {};
            }
            e.target.assign(buf, static_cast<std::size_t>(n));
            if (options_.unmunge_symlinks && e.target.starts_with(kMungePrefix) && e.target.size() > kMungePrefix.size())
                e.target.erase(0, kMungePrefix.size());
        }
        if (S_ISREG(st.st_mode) && (req_.flags & pn::kListChecksums)) {
            auto h = hash_file(dir, name);
            if (!h) {
                if (h.error() != ENOENT) note(path, h.error());
                return {};
            }
            e.hash = *h;
        }
        if (!S_ISLNK(st.st_mode) && (req_.flags & pn::kListXattrs)) {
            // Unreadable xattrs are reported without a summary: the peer skips the comparison.
            if (auto x = sys::read_xattrs(dir, name)) e.xattrs = pn::summarize_xattrs(*x);
        }
        ++outcome_.entries;
        if (auto r = emit_(std::move(e)); !r) return r;
        if (!S_ISDIR(st.st_mode) || !(is_top ? (req_.flags & pn::kListRecursive) : true)) return {};
        if (depth >= kMaxDepth) {
            note(path, ELOOP);
            return {};
        }
        int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT) note(path, errno);
            return {};
        }
        UniqueFd sub(fd);
        auto names = read_names(sub.get(), path);
        for (const std::string& child : names) {
            std::string child_path = path.empty() ? child : path + "/" + child;
            if (auto r = visit(sub.get(), child, child_path, depth + 1, false); !r) return r;
        }
        return {};
    }

    ListOutcome outcome() const { return outcome_; }

private:
    void note(const std::string& path, int err) {
        if (outcome_.incomplete.empty()) outcome_.incomplete = fmt::format("list \"{}\": {}", path, std::strerror(err));
    }

    std::vector<std::string> read_names(int dirfd, const std::string& path) {
        std::vector<std::string> names;
        int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
        if (dup < 0) {
            note(path, errno);
            return names;
        }
        DIR* d = ::fdopendir(dup);
        if (!d) {
            note(path, errno);
            ::close(dup);
            return names;
        }
        errno = 0;
        while (struct dirent* de = ::readdir(d)) {
            if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0) names.emplace_back(de->d_name);
            errno = 0;
        }
        if (errno != 0) note(path, errno);
        ::closedir(d);
        std::sort(names.begin(), names.end());
        return names;
    }

    static SysResult<pn::Hash128> hash_file(int dir, const std::string& name) {
        int fd = ::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return last_errno();
        UniqueFd file(fd);
        pn::ContentHasher hasher;
        std::vector<std::uint8_t> buf(256 * 1024);
        for (;;) {
            ssize_t n = ::read(file.get(), buf.data(), buf.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return std::unexpected(errno);
            }
            if (n == 0) break;
            hasher.update(buf.data(), static_cast<std::size_t>(n));
        }
        return hasher.digest();
    }

    const pn::ListRequest& req_;
    const ListOptions& options_;
    const std::function<Result<void>(pn::ListEntry&&)>& emit_;
    ListOutcome outcome_;
};

}  // namespace

Result<ListOutcome> list_tree(int root, const pn::ListRequest& req, const ListOptions& options,
                              const std::function<Result<void>(pn::ListEntry&&)>& emit) {
    auto p = resolve_parent(root, req.path);
    if (!p) return op_error("list", req.path.empty() ? "." : req.path, p.error());
    Walker w(req, options, emit);
    if (auto r = w.visit(p->parent.get(), p->name, req.path, 0, true); !r) return std::unexpected(r.error());
    return w.outcome();
}

}  // namespace sfs::server::native
