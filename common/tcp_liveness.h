// Dead-peer detection on a TCP connection, done by the kernel.
//
// A connection whose peer vanished without a FIN or RST (a network partition, a host that
// lost power) otherwise looks open for hours: a blocked read waits forever, and unacknowledged
// data is retransmitted for ~15 minutes (tcp_retries2) before the send fails.
#pragma once

#include <chrono>

namespace sfs {

// Keepalive probes after `idle` of silence, every `interval`, `count` of them: an idle
// connection whose peer is gone fails (ETIMEDOUT) after idle + count * interval. A live peer
// answers the probes at TCP level however slowly its program reads, so this never drops a
// slow client. Best effort: on a descriptor that is not a TCP socket (a pipe under --inetd)
// it does nothing.
void set_tcp_keepalive(int fd, std::chrono::seconds idle, std::chrono::seconds interval, int count) noexcept;

// Keepalive as above (probes after timeout/3, every timeout/6, 3 of them) plus
// TCP_USER_TIMEOUT = timeout: data or probes left unacknowledged for `timeout` abort the
// connection. Note that Linux counts a peer that keeps its receive window at zero (alive,
// but not reading) as unacknowledged too, so `timeout` also bounds how long the peer may
// stall without reading anything. For the replicator's mirror connections
// (mount option mirror_timeout=).
void set_tcp_liveness(int fd, std::chrono::seconds timeout) noexcept;

}  // namespace sfs
