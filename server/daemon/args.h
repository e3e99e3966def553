// The client's argument list after `@RSYNCD: OK` (rsync io.c read_args()).
// Below protocol 30 each argument is a '\n'-terminated line; from 30 on '\0'-terminated.
// An empty argument ends the list. Bounded in count and length.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "server/daemon/line_io.h"

namespace sfs::server {

inline constexpr std::size_t kMaxArgs = 1024;
inline constexpr std::size_t kMaxArgLen = 16 * 1024;  // rsync -M can pass long values; rejected later with a message
inline constexpr std::size_t kMaxArgBytes = 256 * 1024;

Result<std::vector<std::string>> read_args(LineChannel& ch, int protocol);

// `rsync -s` (--secluded-args / --protect-args): the first list ends early and the rest
// follows as a second list, always '\0'-terminated, starting with an arg0 "rsync"
// (rsync rsync.c send_protected_args(), clientserver.c rsync_module()). When the first
// list asks for it, reads the second list and returns one merged list, with the `s`
// letter removed from the option cluster so the session sees ordinary arguments.
// Otherwise returns `first` unchanged.
Result<std::vector<std::string>> read_protected_args(LineChannel& ch, std::vector<std::string> first);

// True when the client pulls (the server sends): `--sender` is among the options.
bool is_pull(const std::vector<std::string>& args);

// The first `refuse options` pattern (wildcards allowed) that a client option matches, or
// empty. Long options match by name (`--delete-after` matches `delete*`); single-letter
// options in a cluster (`-logDtpre.iLsfxC`) match through rsync's letter table.
std::string refused_option(const std::vector<std::string>& args, const std::string& refuse_list);

}  // namespace sfs::server
