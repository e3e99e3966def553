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

void write_sums(std::string& out, const SumHead& h, const std::uint8_t* data, std::int64_t len,
                std::int32_t seed) {
    write_sum_head(out, h);
    std::int64_t off = 0;
    for (std::int32_t i = 0; i < h.count; ++i) {
        auto n = static_cast<std::size_t>(std::min<std::int64_t>(h.blength, len - off));
        put_i32(out, static_cast<std::int32_t>(rolling_checksum(data + off, n)));
        Digest d = block_strong_sum(data + off, n, seed);
        out.append(reinterpret_cast<const char*>(d.data()), static_cast<std::size_t>(h.s2length));
        off += static_cast<std::int64_t>(n);
    }
}

Result<Digest> match_and_send(TokenWriter& tokens, const SumSet& sums, const std::uint8_t* data,
                              std::int64_t len, std::int32_t seed, MatchStats* stats,
                              bool updating_basis) {
    Md4 file_sum = file_transfer_sum(seed);
    MatchStats local;
    MatchStats& st = stats ? *stats : local;
    std::int64_t last_match = 0;

    // Sends data[last_match, upto) as literal then `token` (matched(): also feeds the sum).
    auto matched = [&](std::int64_t upto, std::int32_t token) -> Result<void> {
        std::int64_t n = upto - last_match;
        const std::uint8_t* blk = nullptr;
        std::size_t blen = 0;
        if (token >= 0) {
            blk = data + upto;
            blen = static_cast<std::size_t>(sums.blocks[static_cast<std::size_t>(token)].len);
        }
        if (auto r = tokens.send(token, data + last_match, static_cast<std::size_t>(n), blk, blen); !r)
            return r;
        if (n > 0) file_sum.update(data + last_match, static_cast<std::size_t>(n));
        st.literal += n;
        last_match = upto;
        if (token >= 0) {
            file_sum.update(blk, blen);
            st.matched += static_cast<std::int64_t>(blen);
            last_match += static_cast<std::int64_t>(blen);
        }
        return {};
    };
    constexpr std::int64_t kLiteralFlush = 256 * 1024;

    if (len > 0 && sums.head.count > 0) {
        std::unordered_multimap<std::uint32_t, std::int32_t> table;
        table.reserve(sums.blocks.size());
        for (std::int32_t i = 0; i < sums.head.count; ++i)
            table.emplace(sums.blocks[static_cast<std::size_t>(i)].sum1, i);
        const std::int64_t blength = sums.head.blength;
        const auto s2 = static_cast<std::size_t>(sums.head.s2length);
        std::int64_t k = std::min(blength, len);
        std::int64_t offset = 0;
        RollingSum roll;
        roll.init(data, static_cast<std::size_t>(k));
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
                    strong = block_strong_sum(data + offset, static_cast<std::size_t>(k), seed);
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
                if (k > 0) roll.init(data + offset, static_cast<std::size_t>(k));
                continue;
            }
            // Slide one byte; the window shrinks at the end of the file.
            if (offset + k < len) {
                roll.roll(data[offset], data[offset + k], static_cast<std::size_t>(k));
            } else {
                roll.shrink(data[offset], static_cast<std::size_t>(k));
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
