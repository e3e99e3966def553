// Entering a module before its transfer runs (rsync clientserver.c rsync_module(), the part
// after authentication): check the path, chroot when `use chroot`, then drop to the
// module's uid/gid when started as root. Runs in the forked connection process only, so
// the listening daemon keeps its own identity.
#pragma once

#include <string>

#include "common/result.h"
#include "server/daemon/config.h"

namespace sfs::server {

struct ModuleEnv {
    std::string root;    // module root as the transfer sees it ("/" after chroot)
    bool chrooted = false;
    bool am_root = false;  // effective uid 0 after dropping privileges
};

// Why a module could not be entered: what the client is told (after "@ERROR: ", rsyncd's
// wording) and the detail that goes to the log only.
struct Refusal {
    std::string client;
    std::string log;
};

std::expected<ModuleEnv, Refusal> enter_module(const ModuleConfig& module);

}  // namespace sfs::server
