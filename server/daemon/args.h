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
inline constexpr std::size_t kMaxArgLen = 4096;
inline constexpr std::size_t kMaxArgBytes = 256 * 1024;

Result<std::vector<std::string>> read_args(LineChannel& ch, int protocol);

// True when the client pulls (the server sends): `--sender` is among the options.
bool is_pull(const std::vector<std::string>& args);

// The first `refuse options` pattern (wildcards allowed) that a client option matches, or
// empty. Long options match by name (`--delete-after` matches `delete*`); single-letter
// options in a cluster (`-logDtpre.iLsfxC`) match through rsync's letter table.
std::string refused_option(const std::vector<std::string>& args, const std::string& refuse_list);

}  // namespace sfs::server
