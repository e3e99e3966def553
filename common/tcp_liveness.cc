#include "common/tcp_liveness.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace sfs {
namespace {

int clamp_seconds(std::chrono::seconds s) {
    return static_cast<int>(std::clamp<std::chrono::seconds::rep>(s.count(), 1, 86400));
}

}  // namespace

void set_tcp_keepalive(int fd, std::chrono::seconds idle, std::chrono::seconds interval, int count) noexcept {
    const int one = 1;
    const int idle_s = clamp_seconds(idle);
    const int interval_s = clamp_seconds(interval);
    const int probes = std::clamp(count, 1, 127);
    if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0) return;  // not a socket
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

void set_tcp_liveness(int fd, std::chrono::seconds timeout) noexcept {
    const int t = clamp_seconds(timeout);
    set_tcp_keepalive(fd, std::chrono::seconds(std::max(1, t / 3)), std::chrono::seconds(std::max(1, t / 6)), 3);
    const unsigned user_timeout_ms = static_cast<unsigned>(t) * 1000u;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

}  // namespace sfs
