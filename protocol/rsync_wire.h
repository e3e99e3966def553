// rsync wire primitives (protocol 27): little-endian integers, the pre-30 "longint"
// encoding, and the multiplexed output stream.
//
// Design: role code (sender, receiver, generator) reads through WireReader and writes
// through WireWriter and never sees framing. FdReader is the plain client->server stream
// (below protocol 30 the client never multiplexes its output to a daemon, io.c
// need_messages_from_generator). MuxWriter is the server->client stream, multiplexed from
// the first byte after the checksum seed (main.c start_server: protocol >= 23). Every read
// is bounded by the caller: read_bytes() takes the largest length the caller accepts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sfs::protocol {

// Multiplex tags (rsync.h enum msgcode) and the header base.
inline constexpr int kMplexBase = 7;
// MSG_SUCCESS (100) carries an int32 file index: the receiver's side has the file (the
// sender's --remove-source-files removes it then).
enum class MsgTag : int { data = 0, error_xfer = 1, info = 2, error = 3, warning = 4, success = 100 };

// Appends encodings to a byte string (used to build frames and in tests).
void put_u8(std::string& out, std::uint8_t v);
void put_i32(std::string& out, std::int32_t v);
// io.c write_longint: int32 when 0 <= v <= INT32_MAX, else 0xFFFFFFFF + low32 + high32.
void put_longint(std::string& out, std::int64_t v);
// io.c write_varlong(x, min_bytes): at least min_bytes (1..8), a leading byte whose high
// bits count the extra bytes. Used below protocol 30 only for -U access times.
void put_varlong(std::string& out, std::int64_t v, int min_bytes);

class WireReader {
public:
    virtual ~WireReader() = default;
    // Reads exactly n bytes or fails (EOF is an error naming the peer).
    virtual Result<void> read_exact(void* buf, std::size_t n) = 0;

    Result<std::uint8_t> read_u8();
    Result<std::int32_t> read_i32();
    Result<std::int64_t> read_longint();
    // io.c read_varlong(); fails on an encoding longer than 8 value bytes.
    Result<std::int64_t> read_varlong(int min_bytes);
    // Reads n bytes after checking n <= max; `what` names the field in the error.
    Result<std::string> read_bytes(std::int64_t n, std::size_t max, std::string_view what);
};

// Reads from a byte span (tests, fuzzing, decoding captured streams).
class SpanReader final : public WireReader {
public:
    explicit SpanReader(std::span<const std::uint8_t> data) : data_(data) {}
    explicit SpanReader(std::string_view s)
        : data_(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()) {}
    Result<void> read_exact(void* buf, std::size_t n) override;
    std::size_t remaining() const { return data_.size() - pos_; }

private:
    std::span<const std::uint8_t> data_;
    std::size_t pos_ = 0;
};

// Buffered blocking reader over a borrowed fd; counts bytes for the statistics.
class FdReader final : public WireReader {
public:
    FdReader(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
    Result<void> read_exact(void* buf, std::size_t n) override;
    std::uint64_t bytes_read() const { return total_; }
    // Called before the reader blocks on the fd: the session flushes its buffered output
    // there, as rsync's perform_io does, so neither side waits on data the other holds.
    void set_before_block(std::function<void()> f) { before_block_ = std::move(f); }

private:
    std::function<void()> before_block_;
    int fd_;
    std::string peer_;
    std::string buf_;
    std::size_t pos_ = 0;
    std::uint64_t total_ = 0;
};

// The multiplexed client->server stream (io.c read_a_msg): what a client sends when it
// needs to message the server (the client's --remove-source-files, "need messages from
// generator"). MSG_DATA payloads are the byte stream; MSG_SUCCESS (4 bytes) goes to
// `on_success`, info/error texts (at most 64 KiB) to `on_message`, MSG_NOOP is skipped, any
// other tag is a protocol error. `set_raw(true)` reads the underlying stream unframed
// (protocol < 31 sends --files-from names that way).
class MuxReader final : public WireReader {
public:
    explicit MuxReader(WireReader& in) : in_(in) {}
    Result<void> read_exact(void* buf, std::size_t n) override;
    void set_raw(bool raw) { raw_ = raw; }
    std::function<void(std::int32_t)> on_success;
    std::function<void(int tag, const std::string&)> on_message;

private:
    WireReader& in_;
    std::size_t remaining_ = 0;   // data bytes left in the current MSG_DATA frame
    bool raw_ = false;
};

class WireWriter {
public:
    virtual ~WireWriter() = default;
    virtual Result<void> write(const void* buf, std::size_t n) = 0;

    Result<void> write(std::string_view s) { return write(s.data(), s.size()); }
    Result<void> write_u8(std::uint8_t v);
    Result<void> write_i32(std::int32_t v);
    Result<void> write_longint(std::int64_t v);
};

// Collects written bytes (tests, and pre-encoding a frame).
class StringWriter final : public WireWriter {
public:
    Result<void> write(const void* buf, std::size_t n) override;
    using WireWriter::write;
    std::string data;
};

// The multiplexed server->client stream. Data is buffered and sent as MSG_DATA frames;
// messages flush pending data first so their order relative to data is kept. Thread-safe:
// the generator and the receiver thread share it.
class MuxWriter final : public WireWriter {
public:
    explicit MuxWriter(int fd) : fd_(fd) {}
    Result<void> write(const void* buf, std::size_t n) override;
    using WireWriter::write;
    Result<void> send_msg(MsgTag tag, std::string_view text);
    Result<void> flush();
    std::uint64_t bytes_written() const;

private:
    Result<void> flush_locked();
    Result<void> frame_locked(MsgTag tag, const char* p, std::size_t n);
    Result<void> raw_write_locked(const char* p, std::size_t n);

    int fd_;
    mutable std::mutex mu_;
    std::string pending_;
    std::uint64_t total_ = 0;
    bool broken_ = false;
};

// Writes all bytes to a borrowed fd (EINTR-safe); the unmultiplexed seed goes through this.
Result<void> write_all(int fd, const void* buf, std::size_t n);

}  // namespace sfs::protocol
