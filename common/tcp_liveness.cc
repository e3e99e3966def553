#include "common/tcp_liveness.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace sfs {

void set_tcp_liveness(int fd, std::chrono::seconds timeout) noexcept {
    const int t = static_cast<int>(std::clamp<std::chrono::seconds::rep>(timeout.count(), 1, 86400));
    const int one = 1;
    const int idle = std::max(1, t / 3);
    const int interval = std::max(1, t / 6);
    const int count = 3;
    const unsigned user_timeout_ms = static_cast<unsigned>(t) * 1000u;
    if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0) return;  // not a socket
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

}  // namespace sfs
