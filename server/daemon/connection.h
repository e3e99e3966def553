// One client connection, from the greeting to the end of the transfer (rsync
// clientserver.c start_daemon() + rsync_module()).
//
// Design note. The server speaks first: `@RSYNCD: <ver>.0 sha512 sha256 sha1 md5 md4`. The client's FIRST
// line then decides which protocol this connection is:
//   `@RSYNCD: ...`  a stock rsync client: version negotiation, motd, module line, access
//                   checks, auth, module entry (chroot/uid/gid), argument list, then
//                   run_rsync_session();
//   `SYNCFS ...`    the native syncfs replicator: dispatched in dispatch_first_line(), the
//                   single place where run_native_session() will be called.
// Anything else is refused with `@ERROR: protocol startup error`. Every refusal uses
// rsyncd's exact `@ERROR:` text, since clients and scripts print or match it.
//
// Runs in the forked per-connection process (or the --inetd process): it may chroot and
// drop privileges, so it must never run inside the listening daemon.
#pragma once

#include <cstdint>
#include <string>

#include "server/daemon/config.h"
#include "server/daemon/host_access.h"

namespace sfs::server {

// What the connection did, for the one log line per connection.
struct ConnectionReport {
    std::string host;       // peer name or UNDETERMINED
    std::string address;    // peer address
    std::string protocol;   // "rsync", "native" or "" when the client never said
    std::string module;     // empty for a listing
    std::string user;       // authenticated user, if any
    std::string request;    // "list", "push", "pull"
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    bool ok = false;
    std::string result;     // "ok" or why not
};

struct ConnectionOptions {
    int handshake_timeout_s = 60;   // whole text phase, so a slow client cannot pin a slot
    int auth_fail_delay_min_ms = 1000;
    int auth_fail_delay_max_ms = 2000;
};

// Serves one connection on the given fds (borrowed; the caller closes them).
ConnectionReport serve_connection(int in_fd, int out_fd, const DaemonConfig& config, Peer peer,
                                  const ConnectionOptions& options) noexcept;

// The report as one log line.
std::string format_report(const ConnectionReport& r);

}  // namespace sfs::server
