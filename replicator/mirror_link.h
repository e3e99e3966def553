// MirrorLink: the replicator's connection to one syncfsd (client side of docs/protocol.md).
//
// connect() does everything up to a usable binary session: parse the mirror URL, TCP connect
// with a timeout (IPv4/IPv6), read the `@RSYNCD:` greeting, send `SYNCFS 1 <module>`, answer
// the rsync-style auth challenge with the password file's first line, then Hello/HelloReply.
// Every failure is an Error naming the peer (`mirror web@host:873/web`) and the reason.
//
// Threading: send()/queue()/flush() may be called from any thread (one writer mutex);
// receive()/read_reply() from ONE reader thread. The reader must keep reading while the
// writer sends: the server blocks on a full socket otherwise (its replies to list and
// signature queries can be large). shutdown() wakes both sides.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protocol/native/messages.h"
#include "replicator/mirror_connection.h"

namespace sfs::repl {

struct MirrorUrl {
    std::string user;   // may be empty
    std::string host;   // without brackets for IPv6
    std::uint16_t port = 873;
    std::string module;
    // "user@host:port/module" ([v6] bracketed) for messages.
    std::string display() const;
};

// rsync://[user@]host[:port]/module[/] ; host may be [v6addr]. The module must be non-empty
// and contain no '/', whitespace or control characters.
Result<MirrorUrl> parse_mirror_url(std::string_view url);

// First line of a password file (like rsync --password-file), without the line end. Refuses
// a file that others can read or write, or (when we are root) one not owned by root.
Result<std::string> read_password_file(const std::string& path);

struct MirrorLinkOptions {
    std::chrono::milliseconds connect_timeout{10000};
    // Each read during the text handshake and the Hello exchange.
    std::chrono::milliseconds handshake_timeout{15000};
    // A connection on which what we sent stays unacknowledged by the mirror's TCP (or
    // unread: a zero window counts too), or whose keepalive probes go unanswered, for this
    // long is dead (ETIMEDOUT): the replicator reconnects (mount option mirror_timeout=,
    // common/tcp_liveness.h).
    std::chrono::seconds peer_timeout{120};
};

class MirrorLink final : public MirrorConnection {
public:
    // secrets_file empty: no password (fails if the module asks for auth).
    static Result<std::unique_ptr<MirrorLink>> connect(const std::string& url, const std::string& secrets_file,
                                                       const std::string& stream_id,
                                                       const MirrorLinkOptions& options = {});
    ~MirrorLink() override;

    const protocol::native::HelloReply& hello() const noexcept override { return hello_; }

    // Encodes and writes one frame; blocks while the socket is full. Thread-safe.
    Result<void> send(const protocol::native::Message& message) override;
    // Buffers a frame without writing (flushes by itself past 1 MiB); flush() writes the
    // buffer. Lets a sender batch many small ops into few syscalls. Thread-safe.
    Result<void> queue(const protocol::native::Message& message);
    Result<void> flush();

    // Next reply; blocks. A Fatal from the server becomes an error carrying its text.
    Result<protocol::native::Message> receive() override;
    // Like receive(), but nullopt when nothing arrives within timeout.
    Result<std::optional<protocol::native::Message>> read_reply(std::chrono::milliseconds timeout);

    void shutdown() noexcept override;

    std::uint64_t bytes_sent() const noexcept override { return bytes_sent_.load(); }
    std::uint64_t bytes_received() const noexcept { return bytes_received_.load(); }
    const std::string& peer() const noexcept { return peer_; }

private:
    MirrorLink() = default;
    Result<void> flush_locked();
    Result<bool> fill(int timeout_ms);  // false on timeout

    UniqueFd fd_;
    std::string peer_;
    protocol::native::HelloReply hello_;
    std::mutex write_mu_;                       // guards out_ and writes to fd_
    std::vector<std::uint8_t> out_;
    protocol::native::FrameDecoder decoder_;    // reader thread only
    std::atomic<std::uint64_t> bytes_sent_{0}, bytes_received_{0};
    std::atomic<bool> shut_{false};
};

// A MirrorConnector (mirror_connection.h) that makes MirrorLinks.
MirrorConnector mirror_link_connector(MirrorLinkOptions options = {});

}  // namespace sfs::repl
