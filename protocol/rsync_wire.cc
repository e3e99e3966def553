#include "protocol/rsync_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sfs::protocol {

namespace {
constexpr std::size_t kFrameMax = 32 * 1024;   // data per MSG_DATA frame
constexpr std::size_t kReadChunk = 64 * 1024;
}  // namespace

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_i32(std::string& out, std::int32_t v) {
    auto u = static_cast<std::uint32_t>(v);
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}

void put_longint(std::string& out, std::int64_t v) {
    if (v >= 0 && v <= 0x7FFFFFFF) {
        put_i32(out, static_cast<std::int32_t>(v));
        return;
    }
    put_i32(out, -1);
    auto u = static_cast<std::uint64_t>(v);
    put_i32(out, static_cast<std::int32_t>(u & 0xFFFFFFFFu));
    put_i32(out, static_cast<std::int32_t>(u >> 32));
}

Result<std::uint8_t> WireReader::read_u8() {
    std::uint8_t b = 0;
    if (auto r = read_exact(&b, 1); !r) return std::unexpected(r.error());
    return b;
}

Result<std::int32_t> WireReader::read_i32() {
    std::uint8_t b[4];
    if (auto r = read_exact(b, 4); !r) return std::unexpected(r.error());
    std::uint32_t u = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
    return static_cast<std::int32_t>(u);
}

void put_varlong(std::string& out, std::int64_t x, int min_bytes) {
    unsigned char b[9] = {};
    const auto u = static_cast<std::uint64_t>(x);
    for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<unsigned char>(u >> (8 * i));
    int cnt = 8;
    while (cnt > min_bytes && b[cnt] == 0) --cnt;
    const auto bit = static_cast<unsigned char>(1u << (7 - cnt + min_bytes));
    if (b[cnt] >= bit) {
        ++cnt;
        b[0] = static_cast<unsigned char>(~(bit - 1));
    } else if (cnt > min_bytes) {
        b[0] = static_cast<unsigned char>(b[cnt] | ~(bit * 2 - 1));
    } else {
        b[0] = b[cnt];
    }
    out.append(reinterpret_cast<const char*>(b), static_cast<std::size_t>(cnt));
}

Result<std::int64_t> WireReader::read_varlong(int min_bytes) {
    static constexpr unsigned char kExtra[64] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 6};
    unsigned char b2[8] = {};
    unsigned char u[9] = {};
    if (min_bytes < 1 || min_bytes > 8) return fail("protocol error: bad varlong width");
    if (auto r = read_exact(b2, static_cast<std::size_t>(min_bytes)); !r) return std::unexpected(r.error());
    std::memcpy(u, b2 + 1, static_cast<std::size_t>(min_bytes - 1));
    const int extra = kExtra[b2[0] / 4];
    if (extra) {
        if (min_bytes + extra > 9) return fail("protocol error: overflow in varlong");
        const auto bit = static_cast<unsigned char>(1u << (8 - extra));
        if (auto r = read_exact(u + min_bytes - 1, static_cast<std::size_t>(extra)); !r) return std::unexpected(r.error());
        u[min_bytes + extra - 1] = static_cast<unsigned char>(b2[0] & (bit - 1));
    } else {
        u[min_bytes - 1] = b2[0];
    }
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | u[i];
    return static_cast<std::int64_t>(v);
}

Result<std::int64_t> WireReader::read_longint() {
    auto v = read_i32();
    if (!v) return std::unexpected(v.error());
    if (*v != -1) return static_cast<std::int64_t>(*v);
    auto lo = read_i32();
    if (!lo) return std::unexpected(lo.error());
    auto hi = read_i32();
    if (!hi) return std::unexpected(hi.error());
    std::uint64_t u = static_cast<std::uint32_t>(*lo) |
                      (static_cast<std::uint64_t>(static_cast<std::uint32_t>(*hi)) << 32);
    return static_cast<std::int64_t>(u);
}

Result<std::string> WireReader::read_bytes(std::int64_t n, std::size_t max, std::string_view what) {
    if (n < 0 || static_cast<std::uint64_t>(n) > max)
        return fail("protocol error: " + std::string(what) + " length " + std::to_string(n) +
                    " out of range (max " + std::to_string(max) + ")");
    std::string s(static_cast<std::size_t>(n), '\0');
    if (n > 0) {
        if (auto r = read_exact(s.data(), s.size()); !r) return std::unexpected(r.error());
    }
    return s;
}

Result<void> SpanReader::read_exact(void* buf, std::size_t n) {
    if (n > data_.size() - pos_) return fail("protocol error: truncated input");
    std::memcpy(buf, data_.data() + pos_, n);
    pos_ += n;
    return {};
}

Result<void> MuxReader::read_exact(void* buf, std::size_t n) {
    if (raw_) return in_.read_exact(buf, n);
    auto* out = static_cast<char*>(buf);
    while (n > 0) {
        if (remaining_ == 0) {
            auto hdr = in_.read_i32();
            if (!hdr) return std::unexpected(hdr.error());
            const auto h = static_cast<std::uint32_t>(*hdr);
            const int tag = static_cast<int>(h >> 24) - 7;
            const std::size_t len = h & 0xFFFFFF;
            if (tag < 0) return fail("protocol error: unexpected tag " + std::to_string(tag) + " in the client's stream");
            if (tag == static_cast<int>(MsgTag::data)) {
                remaining_ = len;
                continue;
            }
            if (tag == static_cast<int>(MsgTag::success)) {
                if (len != 4) return fail("protocol error: MSG_SUCCESS of " + std::to_string(len) + " bytes");
                auto ndx = in_.read_i32();
                if (!ndx) return std::unexpected(ndx.error());
                if (on_success) on_success(*ndx);
                continue;
            }
            constexpr int kNoop = 42;   // MSG_NOOP: keep-alive, no payload
            if (tag == kNoop && len == 0) continue;
            if (tag > static_cast<int>(MsgTag::warning))
                return fail("protocol error: unexpected message tag " + std::to_string(tag) + " from the client");
            auto text = in_.read_bytes(static_cast<std::int64_t>(len), 64 * 1024, "client message");
            if (!text) return std::unexpected(text.error());
            if (on_message) on_message(tag, *text);
            continue;
        }
        std::size_t take = std::min(n, remaining_);
        if (auto r = in_.read_exact(out, take); !r) return r;
        out += take;
        n -= take;
        remaining_ -= take;
    }
    return {};
}

Result<void> FdReader::read_exact(void* buf, std::size_t n) {
    auto* out = static_cast<char*>(buf);
    while (n > 0) {
        if (pos_ == buf_.size()) {
            if (before_block_) before_block_();
            buf_.resize(kReadChunk);
            ssize_t r;
            do {
                r = ::read(fd_, buf_.data(), buf_.size());
            } while (r < 0 && errno == EINTR);
            if (r < 0) {
                int e = errno;
                buf_.clear();
                pos_ = 0;
                return fail("read from " + peer_ + ": " + std::strerror(e), e);
            }
            if (r == 0) {
                buf_.clear();
                pos_ = 0;
                return fail("connection closed by " + peer_ + " (unexpected end of data)");
            }
            buf_.resize(static_cast<std::size_t>(r));
            pos_ = 0;
            total_ += static_cast<std::uint64_t>(r);
        }
        std::size_t take = std::min(n, buf_.size() - pos_);
        std::memcpy(out, buf_.data() + pos_, take);
        pos_ += take;
        out += take;
        n -= take;
    }
    return {};
}

Result<void> WireWriter::write_u8(std::uint8_t v) { return write(&v, 1); }

Result<void> WireWriter::write_i32(std::int32_t v) {
    std::string s;
    put_i32(s, v);
    return write(s);
}

Result<void> WireWriter::write_longint(std::int64_t v) {
    std::string s;
    put_longint(s, v);
    return write(s);
}

Result<void> StringWriter::write(const void* buf, std::size_t n) {
    data.append(static_cast<const char*>(buf), n);
    return {};
}

Result<void> write_all(int fd, const void* buf, std::size_t n) {
    auto* p = static_cast<const char*>(buf);
    while (n > 0) {
        // send() with MSG_NOSIGNAL: a vanished client must be an error, not SIGPIPE.
        ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0 && errno == ENOTSOCK) r = ::write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            return fail(std::string("write to client: ") + std::strerror(e), e);
        }
        p += r;
        n -= static_cast<std::size_t>(r);
    }
    return {};
}

Result<void> MuxWriter::raw_write_locked(const char* p, std::size_t n) {
    if (broken_) return fail("write to client: connection already failed");
    auto r = write_all(fd_, p, n);
    if (!r) {
        broken_ = true;
        return r;
    }
    total_ += n;
    return {};
}

Result<void> MuxWriter::frame_locked(MsgTag tag, const char* p, std::size_t n) {
    std::string hdr;
    put_i32(hdr, static_cast<std::int32_t>(
                     (static_cast<std::uint32_t>(kMplexBase + static_cast<int>(tag)) << 24) |
                     static_cast<std::uint32_t>(n)));
    hdr.append(p, n);
    return raw_write_locked(hdr.data(), hdr.size());
}

Result<void> MuxWriter::flush_locked() {
    std::size_t off = 0;
    while (off < pending_.size()) {
        std::size_t n = std::min(kFrameMax, pending_.size() - off);
        if (auto r = frame_locked(MsgTag::data, pending_.data() + off, n); !r) return r;
        off += n;
    }
    pending_.clear();
    return {};
}

Result<void> MuxWriter::write(const void* buf, std::size_t n) {
    std::lock_guard lock(mu_);
    pending_.append(static_cast<const char*>(buf), n);
    if (pending_.size() >= kFrameMax) return flush_locked();
    return {};
}

Result<void> MuxWriter::send_msg(MsgTag tag, std::string_view text) {
    std::lock_guard lock(mu_);
    if (auto r = flush_locked(); !r) return r;
    std::size_t off = 0;
    while (off < text.size()) {
        std::size_t n = std::min(kFrameMax, text.size() - off);
        if (auto r = frame_locked(tag, text.data() + off, n); !r) return r;
        off += n;
    }
    return {};
}

Result<void> MuxWriter::flush() {
    std::lock_guard lock(mu_);
    return flush_locked();
}

std::uint64_t MuxWriter::bytes_written() const {
    std::lock_guard lock(mu_);
    return total_ + pending_.size();
}

}  // namespace sfs::protocol
