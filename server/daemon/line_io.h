// Bounded text I/O for the daemon handshake.
//
// Every read has a byte bound and an absolute deadline, so a client that trickles bytes or
// never sends a newline cannot hold a connection (and a max-connections slot) forever.
// Reads go byte by byte: the handshake is a few hundred bytes, and nothing past the last
// handshake line may be consumed because the binary session reads the same fd afterwards.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sfs::server {

class LineChannel {
public:
    // Borrows both fds; the caller keeps them open for the channel's lifetime.
    LineChannel(int in_fd, int out_fd, std::chrono::steady_clock::time_point deadline)
        : in_(in_fd), out_(out_fd), deadline_(deadline) {}

    // Reads up to `terminator` (not included; a trailing '\r' before '\n' is dropped).
    // Fails on EOF, timeout, a NUL inside a '\n' line, or more than `max_len` bytes.
    Result<std::string> read_line(std::size_t max_len, char terminator = '\n');
    // Reads exactly `n` raw bytes (the client's --early-input), same deadline.
    Result<std::string> read_bytes(std::size_t n);
    Result<void> write(std::string_view text);

    void set_deadline(std::chrono::steady_clock::time_point d) { deadline_ = d; }
    std::uint64_t bytes_in() const { return bytes_in_; }
    std::uint64_t bytes_out() const { return bytes_out_; }

private:
    Result<bool> wait_readable();
    int in_;
    int out_;
    std::chrono::steady_clock::time_point deadline_;
    std::uint64_t bytes_in_ = 0;
    std::uint64_t bytes_out_ = 0;
};

}  // namespace sfs::server
