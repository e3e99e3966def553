// Paths from the configuration (module path, secrets file) that a local user must not be
// able to redirect: a symlink anywhere in the path owned by neither root nor the daemon's
// euid is refused (rsync 3.5 change_dir() / open_no_attacker_symlinks() walk paths so).
#pragma once

#include <string>

namespace sfs::server {

// The first prefix of `path` (each component, the last included) that is such a symlink;
// "" when there is none.
std::string untrusted_symlink(const std::string& path);

}  // namespace sfs::server
