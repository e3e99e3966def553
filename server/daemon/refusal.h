// Refusing a transfer after the argument list was read (a `refuse options` match).
//
// By then the client expects the binary phase, so an `@ERROR:` line would be misread. rsync
// (main.c start_server after setup_protocol) sends the message on the multiplexed error
// channel; this does the same for the protocols whose setup is only the checksum seed
// (below 30): seed, one MSG_ERROR frame, half-close, short drain so the client reads it
// before the connection goes. From protocol 30 on the setup is the session's (compat
// flags, negotiation), so the connection is only closed and the reason logged.
#pragma once

#include <string>

#include "common/result.h"

namespace sfs::server {

// `message` without the trailing newline, e.g. "The server is configured to refuse --delete".
// Returns an error when the client could not be told (it still gets the connection closed).
Result<void> refuse_transfer(int in_fd, int out_fd, int protocol, const std::string& message);

}  // namespace sfs::server
