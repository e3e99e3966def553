// What a mirror sender needs from a connection to syncfsd: the seam between the replication
// logic (mirror_replicator) and the transport (MirrorLink: TCP, rsync-style auth, native
// frames; owned by the protocol side). Tests can put a fault-injecting connection here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.h"
#include "protocol/native/messages.h"

namespace sfs::repl {

class MirrorConnection {
public:
    virtual ~MirrorConnection() = default;
    // The server's reply to our Hello (applied_seq: where this stream stands on the mirror).
    virtual const protocol::native::HelloReply& hello() const noexcept = 0;
    // Sends one message; blocks while the socket is full. Called from one thread only.
    virtual Result<void> send(const protocol::native::Message& message) = 0;
    // Next message from the server; blocks. Called from one (other) thread only.
    virtual Result<protocol::native::Message> receive() = 0;
    // Makes blocked send()/receive() calls fail promptly (thread-safe).
    virtual void shutdown() noexcept = 0;
    virtual std::uint64_t bytes_sent() const noexcept = 0;
};

// Opens a connection: TCP connect, handshake, auth, Hello. The error names the peer.
using MirrorConnector = std::function<Result<std::unique_ptr<MirrorConnection>>(
    const std::string& url, const std::string& secrets_file, const std::string& stream_id)>;

}  // namespace sfs::repl
