#include "server/rsync/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sfs::server::rsync {

namespace {
int sys_openat2(int dirfd, const char* path, int flags, mode_t mode, __u64 extra_resolve = 0) {
    struct open_how how {};
    how.flags = static_cast<__u64>(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | extra_resolve;
    int r;
    do {
        r = static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
    } while (r < 0 && (errno == EINTR || errno == EAGAIN));
    return r;
}
}  // namespace

Result<ModuleRoot> ModuleRoot::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fail("module path " + path + ": " + std::strerror(e), e);
    }
    ModuleRoot m;
    m.root_.reset(fd);
    m.path_ = path;
    return m;
}

SysResult<UniqueFd> ModuleRoot::open_beneath(const std::string& rel, int flags, mode_t mode) const {
    int fd = sys_openat2(root_.get(), rel.empty() ? "." : rel.c_str(), flags, mode);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

SysResult<UniqueFd> ModuleRoot::open_strict(const std::string& rel, int flags) const {
    int fd = sys_openat2(root_.get(), rel.empty() ? "." : rel.c_str(), flags, 0, RESOLVE_NO_SYMLINKS);
    if (fd < 0) return last_errno();
    return UniqueFd(fd);
}

std::string parent_of(const std::string& rel) {
    auto slash = rel.rfind('/');
    if (slash == std::string::npos) return ".";
    return std::string(rel.data(), slash);
}

std::string base_of(const std::string& rel) {
    auto slash = rel.rfind('/');
    if (slash == std::string::npos) return rel;
    return std::string(rel.data() + slash + 1, rel.size() - slash - 1);
}

SysResult<UniqueFd> ModuleRoot::open_parent(const std::string& rel, std::string& base) const {
    if (rel.empty() || rel == ".") {
        base.assign(1, '.');
        return open_beneath(".", O_PATH | O_DIRECTORY);
    }
    base = base_of(rel);
    return open_beneath(parent_of(rel), O_PATH | O_DIRECTORY);
}

SysResult<struct stat> ModuleRoot::lstat(const std::string& rel) const {
    std::string base;
    auto dir = open_parent(rel, base);
    if (!dir) return std::unexpected(dir.error());
    struct stat st {};
    int flags = AT_SYMLINK_NOFOLLOW;
    if (base == ".") flags |= AT_EMPTY_PATH;
    if (::fstatat(dir->get(), base == "." ? "" : base.c_str(), &st, flags) < 0) return last_errno();
    return st;
}

}  // namespace sfs::server::rsync
