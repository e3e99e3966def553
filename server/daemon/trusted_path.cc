#include "server/daemon/trusted_path.h"

#include <sys/stat.h>
#include <unistd.h>

namespace sfs::server {

std::string untrusted_symlink(const std::string& path) {
    const uid_t me = ::geteuid();
    for (std::size_t s = path.find('/', 1);; s = path.find('/', s + 1)) {
        std::string prefix = s == std::string::npos ? path : path.substr(0, s);
        struct stat st {};
        if (!prefix.empty() && ::lstat(prefix.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && st.st_uid != 0 &&
            st.st_uid != me)
            return prefix;
        if (s == std::string::npos) return {};
    }
}

}  // namespace sfs::server
