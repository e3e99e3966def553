#include "server/daemon/refusal.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <ctime>

#include "protocol/rsync_wire.h"

namespace sfs::server {

Result<void> refuse_transfer(int in_fd, int out_fd, int protocol, const std::string& message) {
    if (protocol >= 30) return fail("cannot report a refusal before the protocol-" + std::to_string(protocol) + " setup");
    std::string seed;
    protocol::put_i32(seed, static_cast<std::int32_t>(std::time(nullptr)));
    if (auto w = protocol::write_all(out_fd, seed.data(), seed.size()); !w) return w;
    protocol::MuxWriter out(out_fd);
    if (auto w = out.send_msg(protocol::MsgTag::error, message + "\n"); !w) return w;
    if (auto w = out.flush(); !w) return w;
    ::shutdown(out_fd, SHUT_WR);
    // Drain what the client still sends (its filter list) for up to 2 s, so closing with
    // unread input does not reset the connection before the client read the message.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{in_fd, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        if (::read(in_fd, buf, sizeof buf) <= 0) break;
    }
    return {};
}

}  // namespace sfs::server
