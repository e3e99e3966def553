#include "common/xattrs.h"

#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>

namespace sfs::sys {
namespace {

// A path that reaches `name` below `dirfd` for the l*xattr calls, which take no dirfd.
std::string proc_path(int dirfd, const std::string& name) {
    // "/proc/self/fd/N/." for the directory itself: without the "/." the l*xattr calls would
    // act on the /proc symlink, not on the directory it stands for.
    return "/proc/self/fd/" + std::to_string(dirfd) + "/" + (name.empty() ? std::string(".") : name);
}

}  // namespace

SysResult<XattrList> read_xattrs(int dirfd, const std::string& name) {
    const std::string path = proc_path(dirfd, name);
    // The list may grow between the size query and the read: retry on ERANGE.
    std::string names;
    for (int attempt = 0;; ++attempt) {
        ssize_t need = ::llistxattr(path.c_str(), nullptr, 0);
        if (need < 0) {
            if (errno == ENOTSUP) return XattrList{};
            return last_errno();
        }
        if (need == 0) return XattrList{};
        names.resize(static_cast<std::size_t>(need));
        ssize_t got = ::llistxattr(path.c_str(), names.data(), names.size());
        if (got >= 0) {
            names.resize(static_cast<std::size_t>(got));
            break;
        }
        if (errno != ERANGE || attempt == 3) return last_errno();
    }
    XattrList out;
    for (std::size_t i = 0; i < names.size();) {
        std::string key(names.c_str() + i);
        i += key.size() + 1;
        if (key.empty()) continue;
        ssize_t len = ::lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
        if (len < 0) {
            if (errno == ENODATA) continue;  // removed meanwhile
            return last_errno();
        }
        std::string value(static_cast<std::size_t>(len), '\0');
        len = ::lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
        if (len < 0) {
            if (errno == ENODATA) continue;
            return last_errno();
        }
        value.resize(static_cast<std::size_t>(len));
        out.emplace_back(std::move(key), std::move(value));
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace sfs::sys
