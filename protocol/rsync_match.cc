#include "protocol/rsync_match.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace sfs::protocol {

Result<SumHead> read_sum_head(WireReader& in, std::int64_t max_blocks) {
    auto c = in.read_i32();
    if (!c) return std::unexpected(c.error());
    auto b = in.read_i32();
    if (!b) return std::unexpected(b.error());
    auto s2 = in.read_i32();
    if (!s2) return std::unexpected(s2.error());
    auto rem = in.read_i32();
    if (!rem) return std::unexpected(rem.error());
    if (*c < 0 || *c > max_blocks) return fail("protocol error: invalid checksum count " + std::to_string(*c));
    if (*b < 0 || *b > kOldMaxBlockSize || (*c > 0 && *b == 0))
        return fail("protocol error: invalid block length " + std::to_string(*b));
    if (*s2 < 0 || *s2 > kSumLength) return fail("protocol error: invalid checksum length " + std::to_string(*s2));
    if (*rem < 0 || (*b > 0 && *rem >= *b) || (*b == 0 && *rem != 0))
        return fail("protocol error: invalid remainder length " + std::to_string(*rem));
    return SumHead{*c, *b, *s2, *rem};
}

Result<SumSet> read_sums(WireReader& in, std::int64_t max_blocks) {
    SumSet s;
    auto head = read_sum_head(in, max_blocks);
    if (!head) return std::unexpected(head.error());
    s.head = *head;
    const std::int32_t* c = &s.head.count;
    const std::int32_t* b = &s.head.blength;
    const std::int32_t* s2 = &s.head.s2length;
    const std::int32_t* rem = &s.head.remainder;
    s.blocks.resize(static_cast<std::size_t>(*c));
    for (std::int32_t i = 0; i < *c; ++i) {
        auto& blk = s.blocks[static_cast<std::size_t>(i)];
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        blk.sum1 = static_cast<std::uint32_t>(*v);
        if (auto r = in.read_exact(blk.sum2, static_cast<std::size_t>(*s2)); !r) return std::unexpected(r.error());
        blk.len = (i == *c - 1 && *rem != 0) ? *rem : *b;
    }
    return s;
}

void write_sum_head(std::string& out, const SumHead& h) {
    put_i32(out, h.count);
    put_i32(out, h.blength);
    put_i32(out, h.s2length);
    put_i32(out, h.remainder);
}

void write_sums(std::string& out, const SumHead& h, const BlockReader& read, std::int32_t seed) {
    write_sum_head(out, h);
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(std::max(h.blength, 1)));
    std::int64_t off = 0;
    for (std::int32_t i = 0; i < h.count; ++i) {
        auto n = static_cast<std::size_t>((i == h.count - 1 && h.remainder) ? h.remainder : h.blength);
        std::size_t got = read(off, buf.data(), n);
        if (got < n) std::memset(buf.data() + got, 0, n - got);
        put_i32(out, static_cast<std::int32_t>(rolling_checksum(buf.data(), n)));
        Digest d = block_strong_sum(buf.data(), n, seed);
        out.append(reinterpret_cast<const char*>(d.data()), static_cast<std::size_t>(h.s2length));
        off += static_cast<std::int64_t>(n);
    }
}

void write_sums(std::string& out, const SumHead& h, const std::uint8_t* data, std::int64_t len,
                std::int32_t seed) {
    write_sums(out, h, [&](std::int64_t off, std::uint8_t* buf, std::size_t n) -> std::size_t {
        if (off >= len) return 0;
        std::size_t k = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(n), len - off));
        std::memcpy(buf, data + off, k);
        return k;
    }, seed);
}

namespace {

// A sliding read window over the sender's file (rsync's map_ptr): [start, start + size)
// is resident; at() moves it forward with pread-like reads through `read`. Bytes the file
// no longer has (it shrank) read as zeros.
class FileWindow {
public:
    FileWindow(const BlockReader& read, std::int64_t len, std::size_t cap)
        : read_(read), len_(len), cap_(cap) {}
    // Makes [lo, hi) resident (hi - lo <= cap) and returns the pointer for offset lo.
    const std::uint8_t* at(std::int64_t lo, std::int64_t hi) {
        if (lo < start_ || hi > start_ + static_cast<std::int64_t>(buf_.size())) refill(lo, hi);
        return buf_.data() + (lo - start_);
    }
    std::int64_t start() const { return start_; }
    std::int64_t end() const { return start_ + static_cast<std::int64_t>(buf_.size()); }
    bool shrank() const { return shrank_; }

private:
    void refill(std::int64_t lo, std::int64_t hi) {
        std::int64_t want_end = std::min(len_, std::max(hi, lo + static_cast<std::int64_t>(cap_)));
        std::vector<std::uint8_t> next(static_cast<std::size_t>(want_end - lo));
        std::int64_t from = lo;
        // Keep the overlap with the current window.
        if (lo >= start_ && lo < end()) {
            std::size_t keep = static_cast<std::size_t>(std::min(end(), want_end) - lo);
            std::memcpy(next.data(), buf_.data() + (lo - start_), keep);
            from = lo + static_cast<std::int64_t>(keep);
        }
        while (from < want_end) {
            std::size_t n = static_cast<std::size_t>(want_end - from);
            std::size_t got = read_(from, next.data() + (from - lo), n);
            if (got == 0) {
                std::memset(next.data() + (from - lo), 0, n);
                shrank_ = true;
                break;
            }
            from += static_cast<std::int64_t>(got);
        }
        buf_ = std::move(next);
        start_ = lo;
    }

    const BlockReader& read_;
    std::int64_t len_;
    std::size_t cap_;
    std::vector<std::uint8_t> buf_;
    std::int64_t start_ = 0;
    bool shrank_ = false;
};

}  // namespace

Result<Digest> match_and_send(TokenWriter& tokens, const SumSet& sums, const std::uint8_t* data,
                              std::int64_t len, std::int32_t seed, MatchStats* stats,
                              bool updating_basis) {
    BlockReader read = [&](std::int64_t off, std::uint8_t* buf, std::size_t n) -> std::size_t {
        if (off >= len) return 0;
        std::size_t k = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(n), len - off));
        std::memcpy(buf, data + off, k);
        return k;
    };
    return match_and_send(tokens, sums, read, len, seed, stats, updating_basis);
}

Result<Digest> match_and_send(TokenWriter& tokens, const SumSet& sums, const BlockReader& read,
                              std::int64_t len, std::int32_t seed, MatchStats* stats,
                              bool updating_basis) {
    constexpr std::int64_t kLiteralFlush = 256 * 1024;
    if (sums.head.blength > kMaxSendBlockLength)
        return fail("block length " + std::to_string(sums.head.blength) + " is larger than this server accepts (" +
                    std::to_string(kMaxSendBlockLength) + ")");
    Md4 file_sum = file_transfer_sum(seed);
    MatchStats local;
    MatchStats& st = stats ? *stats : local;
    std::int64_t last_match = 0;
    const std::int64_t blength = std::max<std::int64_t>(sums.head.blength, 1);
    // The window must hold [last_match, offset + k]: literal runs are flushed before they
    // exceed kLiteralFlush + blength.
    FileWindow win(read, len, static_cast<std::size_t>(std::max<std::int64_t>(4 << 20, 2 * (kLiteralFlush + 2 * blength + 1))));

    // Sends [last_match, upto) as literal then `token` (matched(): also feeds the sum).
    auto matched = [&](std::int64_t upto, std::int32_t token) -> Result<void> {
        std::int64_t n = upto - last_match;
        std::size_t blen = 0;
        if (token >= 0) blen = static_cast<std::size_t>(sums.blocks[static_cast<std::size_t>(token)].len);
        const std::uint8_t* lit = win.at(last_match, upto + static_cast<std::int64_t>(blen));
        const std::uint8_t* blk = token >= 0 ? lit + n : nullptr;
        if (auto r = tokens.send(token, lit, static_cast<std::size_t>(n), blk, blen); !r) return r;
        if (n > 0) file_sum.update(lit, static_cast<std::size_t>(n));
        st.literal += n;
        last_match = upto;
        if (token >= 0) {
            file_sum.update(blk, blen);
            st.matched += static_cast<std::int64_t>(blen);
            last_match += static_cast<std::int64_t>(blen);
        }
        return {};
    };

    if (len > 0 && sums.head.count > 0) {
        std::unordered_multimap<std::uint32_t, std::int32_t> table;
        table.reserve(sums.blocks.size());
        for (std::int32_t i = 0; i < sums.head.count; ++i)
            table.emplace(sums.blocks[static_cast<std::size_t>(i)].sum1, i);
        const auto s2 = static_cast<std::size_t>(sums.head.s2length);
        std::int64_t k = std::min(blength, len);
        std::int64_t offset = 0;
        RollingSum roll;
        roll.init(win.at(0, k), static_cast<std::size_t>(k));
        std::int32_t want_i = 0;
        while (k > 0 && offset + k <= len) {
            std::uint32_t sum = roll.value();
            std::int32_t found = -1;
            Digest strong{};
            bool have_strong = false;
            auto try_block = [&](std::int32_t i) {
                const BlockSum& b = sums.blocks[static_cast<std::size_t>(i)];
                if (b.sum1 != sum || b.len != k) return false;
                if (updating_basis && static_cast<std::int64_t>(i) * blength < offset) return false;
                if (!have_strong) {
                    win.at(last_match, offset + k);
                    strong = block_strong_sum(win.at(offset, offset + k), static_cast<std::size_t>(k), seed);
                    have_strong = true;
                }
                return std::memcmp(strong.data(), b.sum2, s2) == 0;
            };
            // Prefer the block following the previous match (match.c want_i).
            if (want_i < sums.head.count && try_block(want_i)) {
                found = want_i;
            } else {
                auto range = table.equal_range(sum);
                for (auto it = range.first; it != range.second; ++it) {
                    if (try_block(it->second)) {
                        found = it->second;
                        break;
                    }
                }
            }
            if (found >= 0) {
                if (auto r = matched(offset, found); !r) return std::unexpected(r.error());
                want_i = found + 1;
                offset += k;
                k = std::min(blength, len - offset);
                if (k > 0) roll.init(win.at(offset, offset + k), static_cast<std::size_t>(k));
                continue;
            }
            // Slide one byte; the window shrinks at the end of the file.
            if (offset + k < len) {
                if (offset + k >= win.end() || last_match < win.start()) win.at(last_match, offset + k + 1);
                const std::uint8_t* base = win.at(win.start(), win.start());
                roll.roll(base[offset - win.start()], base[offset + k - win.start()], static_cast<std::size_t>(k));
            } else {
                roll.shrink(*win.at(offset, offset + 1), static_cast<std::size_t>(k));
                --k;
            }
            ++offset;
            if (offset - last_match >= kLiteralFlush + blength && len - offset > kLiteralFlush) {
                if (auto r = matched(offset - blength, -2); !r) return std::unexpected(r.error());
            }
        }
    } else {
        for (std::int64_t j = 0; j < len; j += kChunkSize) {
            std::int64_t n1 = std::min<std::int64_t>(kChunkSize, len - j);
            if (auto r = matched(j + n1, -2); !r) return std::unexpected(r.error());
        }
    }
    if (auto r = matched(len, -1); !r) return std::unexpected(r.error());
    return file_sum.finish();
}

}  // namespace sfs::protocol
