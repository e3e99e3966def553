#include "protocol/rsync_token.h"

#include <algorithm>
#include <cstring>

namespace sfs::protocol {

namespace {
constexpr std::uint8_t kEndFlag = 0;
constexpr std::uint8_t kTokenLong = 0x20;
constexpr std::uint8_t kTokenRunLong = 0x21;
constexpr std::uint8_t kDeflatedData = 0x40;
constexpr std::uint8_t kTokenRel = 0x80;
constexpr std::uint8_t kTokenRunRel = 0xc0;
constexpr std::int32_t kMaxTokenIndex = 0x7ffffffe;
constexpr std::size_t kOutStep = 64 * 1024;

Result<void> zfail(const char* what, int r) {
    return fail(std::string("compression error: ") + what + " returned " + std::to_string(r));
}
}  // namespace

TokenWriter::TokenWriter(WireWriter& out, bool compress, int level, int protocol)
    : out_(out), compress_(compress), level_(level), protocol_(protocol) {}

TokenWriter::~TokenWriter() {
    if (init_done_) deflateEnd(&tx_);
}

Result<void> TokenWriter::send(std::int32_t token, const std::uint8_t* lit, std::size_t n,
                               const std::uint8_t* block, std::size_t blen) {
    return compress_ ? send_deflated(token, lit, n, block, blen) : send_plain(token, lit, n);
}

Result<void> TokenWriter::send_plain(std::int32_t token, const std::uint8_t* lit, std::size_t n) {
    std::size_t off = 0;
    while (off < n) {
        std::size_t k = std::min<std::size_t>(kChunkSize, n - off);
        if (auto r = out_.write_i32(static_cast<std::int32_t>(k)); !r) return r;
        if (auto r = out_.write(lit + off, k); !r) return r;
        off += k;
    }
    if (token != -2) return out_.write_i32(-(token + 1));
    return {};
}

// Sends compressed bytes as DEFLATED_DATA packets.
Result<void> TokenWriter::emit_data(std::string& z, bool /*final*/) {
    std::size_t off = 0;
    while (off < z.size()) {
        std::size_t k = std::min<std::size_t>(kMaxDataCount, z.size() - off);
        std::string hdr;
        put_u8(hdr, static_cast<std::uint8_t>(kDeflatedData + (k >> 8)));
        put_u8(hdr, static_cast<std::uint8_t>(k & 0xFF));
        hdr.append(z, off, k);
        if (auto r = out_.write(hdr); !r) return r;
        off += k;
    }
    z.clear();
    return {};
}

Result<void> TokenWriter::send_deflated(std::int32_t token, const std::uint8_t* lit, std::size_t nb,
                                        const std::uint8_t* block, std::size_t toklen) {
    if (last_token_ == -1) {
        if (!init_done_) {
            tx_ = z_stream{};
            int r = deflateInit2(&tx_, level_, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
            if (r != Z_OK) return zfail("deflateInit2", r);
            init_done_ = true;
        } else {
            deflateReset(&tx_);
        }
        last_run_end_ = 0;
        run_start_ = token;
        flush_pending_ = false;
    } else if (last_token_ == -2) {
        run_start_ = token;
    } else if (nb != 0 || token != last_token_ + 1 || token >= run_start_ + 65536) {
        // output the previous run
        std::int32_t r = run_start_ - last_run_end_;
        std::int32_t n = last_token_ - run_start_;
        std::string s;
        if (r >= 0 && r <= 63) {
            put_u8(s, static_cast<std::uint8_t>((n == 0 ? kTokenRel : kTokenRunRel) + r));
        } else {
            put_u8(s, n == 0 ? kTokenLong : kTokenRunLong);
            put_i32(s, run_start_);
        }
        if (n != 0) {
            put_u8(s, static_cast<std::uint8_t>(n & 0xFF));
            put_u8(s, static_cast<std::uint8_t>((n >> 8) & 0xFF));
        }
        if (auto w = out_.write(s); !w) return w;
        last_run_end_ = last_token_;
        run_start_ = token;
    }
    last_token_ = token;

    if (nb != 0 || flush_pending_) {
        std::string z;
        int flush = (token != -2) ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        tx_.next_in = const_cast<Bytef*>(lit);
        tx_.avail_in = static_cast<uInt>(nb);
        for (;;) {
            std::size_t old = z.size();
            z.resize(old + kOutStep);
            tx_.next_out = reinterpret_cast<Bytef*>(z.data() + old);
            tx_.avail_out = static_cast<uInt>(kOutStep);
            int r = deflate(&tx_, flush);
            if (r != Z_OK && r != Z_BUF_ERROR) return zfail("deflate", r);
            z.resize(old + kOutStep - tx_.avail_out);
            if (tx_.avail_in == 0 && tx_.avail_out != 0) break;
        }
        if (flush == Z_SYNC_FLUSH) {
            // Strip the 00 00 ff ff of the sync flush; the receiver adds it back.
            if (z.size() < 4) return fail("compression error: sync flush too short");
            z.resize(z.size() - 4);
        }
        if (auto w = emit_data(z, flush == Z_SYNC_FLUSH); !w) return w;
        flush_pending_ = token == -2;
    }

    if (token == -1) {
        if (auto w = out_.write_u8(kEndFlag); !w) return w;
    } else if (token != -2 && history_) {
        // Add the matched block to the compressor history (output discarded).
        const std::uint8_t* p = block;
        std::size_t left = toklen;
        std::string sink(kOutStep, '\0');
        do {
            std::size_t n1 = std::min<std::size_t>(left, 0xffff);
            left -= n1;
            tx_.next_in = const_cast<Bytef*>(p);
            tx_.avail_in = static_cast<uInt>(n1);
            if (protocol_ >= 31) p += n1;
            do {
                tx_.next_out = reinterpret_cast<Bytef*>(sink.data());
                tx_.avail_out = static_cast<uInt>(sink.size());
                int r = deflate(&tx_, Z_SYNC_FLUSH);
                if (r != Z_OK && r != Z_BUF_ERROR) return zfail("deflate (token)", r);
            } while (tx_.avail_in != 0 || tx_.avail_out == 0);
        } while (left > 0);
    }
    if (token == -1) last_token_ = -1;
    return {};
}

TokenReader::TokenReader(WireReader& in, bool compress, int protocol)
    : in_(in), compress_(compress), protocol_(protocol) {}

TokenReader::~TokenReader() {
    if (init_done_) inflateEnd(&rx_);
}

Result<Token> TokenReader::next() { return compress_ ? next_deflated() : next_plain(); }

Result<Token> TokenReader::next_plain() {
    if (residue_ == 0) {
        auto i = in_.read_i32();
        if (!i) return std::unexpected(i.error());
        if (*i == 0) return Token{Token::end, {}, 0};
        if (*i < 0) return Token{Token::block, {}, -(*i + 1)};
        residue_ = *i;
    }
    std::int32_t n = std::min(kChunkSize, residue_);
    residue_ -= n;
    buf_.resize(static_cast<std::size_t>(n));
    if (auto r = in_.read_exact(buf_.data(), buf_.size()); !r) return std::unexpected(r.error());
    return Token{Token::literal, buf_, 0};
}

Result<Token> TokenReader::token_num(std::uint32_t flag) {
    if (flag & kTokenRel) {
        std::int32_t incr = static_cast<std::int32_t>(flag & 0x3f);
        if (rx_token_ > kMaxTokenIndex - incr) return fail("protocol error: invalid token number in compressed stream");
        rx_token_ += incr;
        flag >>= 6;
    } else {
        auto t = in_.read_i32();
        if (!t) return std::unexpected(t.error());
        if (*t < 0 || *t > kMaxTokenIndex) return fail("protocol error: invalid token number in compressed stream");
        rx_token_ = *t;
    }
    if (flag & 1) {
        auto lo = in_.read_u8();
        if (!lo) return std::unexpected(lo.error());
        auto hi = in_.read_u8();
        if (!hi) return std::unexpected(hi.error());
        rx_run_ = *lo + (*hi << 8);
        if (rx_run_ <= 0 || rx_token_ > kMaxTokenIndex - rx_run_)
            return fail("protocol error: invalid token run in compressed stream");
        state_ = r_running;
    }
    return Token{Token::block, {}, rx_token_};
}

Result<Token> TokenReader::next_deflated() {
    constexpr std::size_t kDbuf = kChunkSize * 1001 / 1000 + 16;
    for (;;) {
        switch (state_) {
        case r_init:
            if (!init_done_) {
                rx_ = z_stream{};
                int r = inflateInit2(&rx_, -15);
                if (r != Z_OK) return std::unexpected(zfail("inflateInit2", r).error());
                cbuf_.resize(kMaxDataCount);
                dbuf_.resize(kDbuf);
                init_done_ = true;
            } else {
                inflateReset(&rx_);
            }
            state_ = r_idle;
            rx_token_ = 0;
            break;
        case r_idle:
        case r_inflated: {
            std::uint32_t flag;
            if (saved_flag_) {
                flag = saved_flag_ & 0xff;
                saved_flag_ = 0;
            } else {
                auto f = in_.read_u8();
                if (!f) return std::unexpected(f.error());
                flag = *f;
            }
            if ((flag & 0xC0) == kDeflatedData) {
                auto lo = in_.read_u8();
                if (!lo) return std::unexpected(lo.error());
                std::size_t n = ((flag & 0x3f) << 8) + *lo;
                if (auto r = in_.read_exact(cbuf_.data(), n); !r) return std::unexpected(r.error());
                rx_.next_in = reinterpret_cast<Bytef*>(cbuf_.data());
                rx_.avail_in = static_cast<uInt>(n);
                state_ = r_inflating;
                break;
            }
            if (state_ == r_inflated) {
                rx_.avail_in = 0;
                rx_.next_out = reinterpret_cast<Bytef*>(dbuf_.data());
                rx_.avail_out = static_cast<uInt>(dbuf_.size());
                int r = inflate(&rx_, Z_SYNC_FLUSH);
                std::size_t n = dbuf_.size() - rx_.avail_out;
                if (r != Z_OK && r != Z_BUF_ERROR) return std::unexpected(zfail("inflate flush", r).error());
                if (n != 0 && r != Z_BUF_ERROR) {
                    saved_flag_ = flag + 0x10000;
                    return Token{Token::literal, std::string_view(dbuf_.data(), n), 0};
                }
                static const unsigned char kSync[4] = {0, 0, 0xff, 0xff};
                rx_.next_in = const_cast<Bytef*>(kSync);
                rx_.avail_in = 4;
                rx_.next_out = reinterpret_cast<Bytef*>(dbuf_.data());
                rx_.avail_out = static_cast<uInt>(dbuf_.size());
                inflate(&rx_, Z_SYNC_FLUSH);
                state_ = r_idle;
            }
            if (flag == kEndFlag) {
                state_ = r_init;
                return Token{Token::end, {}, 0};
            }
            if (!(flag & kTokenRel) && (flag & 0xFE) != kTokenLong)
                return fail("protocol error: invalid flag byte " + std::to_string(flag) + " in compressed stream");
            return token_num(flag);
        }
        case r_inflating: {
            rx_.next_out = reinterpret_cast<Bytef*>(dbuf_.data());
            rx_.avail_out = static_cast<uInt>(dbuf_.size());
            int r = inflate(&rx_, Z_NO_FLUSH);
            std::size_t n = dbuf_.size() - rx_.avail_out;
            if (r != Z_OK) return std::unexpected(zfail("inflate", r).error());
            if (rx_.avail_in == 0) state_ = r_inflated;
            if (n != 0) return Token{Token::literal, std::string_view(dbuf_.data(), n), 0};
            break;
        }
        case r_running:
            if (rx_run_ <= 0 || rx_token_ >= kMaxTokenIndex)
                return fail("protocol error: invalid token run in compressed stream");
            ++rx_token_;
            if (--rx_run_ == 0) state_ = r_idle;
            return Token{Token::block, {}, rx_token_};
        }
    }
}

Result<void> TokenReader::see_block(const std::uint8_t* data, std::size_t len) {
    if (!compress_ || !history_) return {};
    unsigned char hdr[5];
    std::size_t blklen = 0;
    rx_.avail_in = 0;
    hdr[0] = 0;
    do {
        if (rx_.avail_in == 0 && len != 0) {
            if (blklen == 0) {
                rx_.next_in = hdr;
                rx_.avail_in = 5;
                blklen = std::min<std::size_t>(len, 0xffff);
                hdr[1] = static_cast<unsigned char>(blklen);
                hdr[2] = static_cast<unsigned char>(blklen >> 8);
                hdr[3] = static_cast<unsigned char>(~hdr[1]);
                hdr[4] = static_cast<unsigned char>(~hdr[2]);
            } else {
                rx_.next_in = const_cast<Bytef*>(data);
                rx_.avail_in = static_cast<uInt>(blklen);
                if (protocol_ >= 31) data += blklen;
                len -= blklen;
                blklen = 0;
            }
        }
        rx_.next_out = reinterpret_cast<Bytef*>(dbuf_.data());
        rx_.avail_out = static_cast<uInt>(dbuf_.size());
        int r = inflate(&rx_, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR) return zfail("inflate (token)", r);
    } while (len || rx_.avail_out == 0);
    return {};
}

}  // namespace sfs::protocol
