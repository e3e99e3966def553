// Dead-peer detection on a TCP connection, done by the kernel.
//
// A connection whose peer vanished without a FIN or RST (a network partition, a host that
// lost power) otherwise looks open for hours: a blocked read waits forever, and unacknowledged
// data is retransmitted for ~15 minutes (tcp_retries2) before the send fails. With
// set_tcp_liveness(fd, T):
//  - keepalive probes start after T/3 of silence, every T/6, 3 of them;
//  - TCP_USER_TIMEOUT = T: data (or probes) left unacknowledged for T aborts the connection,
//    and every blocked or later read/send on it fails with ETIMEDOUT.
// Best effort: on a descriptor that is not a TCP socket (a pipe under --inetd) it does nothing.
#pragma once

#include <chrono>

namespace sfs {

void set_tcp_liveness(int fd, std::chrono::seconds timeout) noexcept;

}  // namespace sfs
