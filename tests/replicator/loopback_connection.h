// A MirrorConnection to the REAL mirror-side session (server::run_native_session) over a
// socketpair, in-process: the replicator tests run the whole protocol without TCP or the
// daemon's text handshake. Optional fault: cut the connection after N sends (network loss).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "common/unique_fd.h"
#include "protocol/native/messages.h"
#include "replicator/mirror_connection.h"
#include "server/native/session.h"

namespace sfs::repl::testing {

namespace pn = protocol::native;

class LoopbackConnection final : public MirrorConnection {
public:
    static Result<std::unique_ptr<MirrorConnection>> open(const server::NativeModule& module, const std::string& stream,
                                                          long cut_after_sends) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return fail("socketpair");
        std::unique_ptr<LoopbackConnection> c(new LoopbackConnection());
        c->fd_.reset(sv[0]);
        c->server_fd_.reset(sv[1]);
        c->cut_after_ = cut_after_sends;
        c->server_ = std::thread([p = c.get(), module] {
            (void)server::run_native_session(p->server_fd_.get(), p->server_fd_.get(), module);
            ::shutdown(p->server_fd_.get(), SHUT_RDWR);
        });
        if (auto s = c->send(pn::Hello{pn::kHelloMagic, pn::kProtocolVersion, 0, stream}); !s) return std::unexpected(s.error());
        auto m = c->receive();
        if (!m) return std::unexpected(m.error());
        auto* reply = std::get_if<pn::HelloReply>(&*m);
        if (!reply) return fail("loopback: no HelloReply");
        c->hello_ = *reply;
        return std::unique_ptr<MirrorConnection>(std::move(c));
    }
    ~LoopbackConnection() override {
        shutdown();
        if (server_.joinable()) server_.join();
    }
    const pn::HelloReply& hello() const noexcept override { return hello_; }
    Result<void> send(const pn::Message& message) override {
        auto frame = pn::encode(message);
        if (!frame) return std::unexpected(frame.error());
        std::lock_guard lock(mu_);
        if (cut_after_ >= 0 && sends_++ >= cut_after_) {
            ::shutdown(fd_.get(), SHUT_RDWR);
            return fail("loopback: injected network cut");
        }
        std::size_t done = 0;
        while (done < frame->size()) {
            ssize_t n = ::send(fd_.get(), frame->data() + done, frame->size() - done, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return fail(std::string("loopback send: ") + std::strerror(errno));
            done += static_cast<std::size_t>(n);
        }
        bytes_sent_ += frame->size();
        return {};
    }
    Result<pn::Message> receive() override {
        for (;;) {
            auto m = decoder_.next();
            if (!m) return std::unexpected(m.error());
            if (*m) return std::move(**m);
            std::uint8_t buf[65536];
            ssize_t n = ::read(fd_.get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return fail("loopback: connection closed");
            decoder_.feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)));
        }
    }
    void shutdown() noexcept override { ::shutdown(fd_.get(), SHUT_RDWR); }
    std::uint64_t bytes_sent() const noexcept override { return bytes_sent_.load(); }

private:
    LoopbackConnection() = default;
    UniqueFd fd_, server_fd_;
    std::thread server_;
    pn::HelloReply hello_;
    pn::FrameDecoder decoder_;
    std::mutex mu_;
    long cut_after_ = -1;
    long sends_ = 0;
    std::atomic<std::uint64_t> bytes_sent_{0};
};

}  // namespace sfs::repl::testing
