// The binary rsync session (see session.h). Placeholder until the protocol-27 roles land.
#include "server/rsync/session.h"

namespace sfs::server {

int max_protocol_version() noexcept { return 27; }

Result<SessionStats> run_rsync_session(int /*in_fd*/, int /*out_fd*/, int /*protocol*/,
                                       const std::vector<std::string>& /*args*/,
                                       const ModuleAccess& /*module*/) {
    return fail("rsync transfer: not implemented yet");
}

}  // namespace sfs::server
