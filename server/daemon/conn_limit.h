// `max connections`: one slot per connection, counted across the forked connection
// processes with fcntl() byte-range write locks on the `lock file` (rsync connection.c).
// The kernel drops a process's locks when it exits, so a crashed child frees its slot.
//
// Unlike rsyncd, whose modules share slots 0..N-1 of one lock file, each module here locks
// its own region (offset derived from the module name), so `max connections` is per module
// even when modules share the default lock file.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::server {

// Claims a free slot. Returns the fd that holds the lock (keep it open for the connection's
// lifetime), nullopt when all `max` slots are taken, or an error when the lock file cannot
// be opened. max <= 0 means unlimited (returns an invalid fd).
Result<std::optional<UniqueFd>> claim_connection_slot(const std::string& lock_file,
                                                       const std::string& module, int max);

}  // namespace sfs::server
