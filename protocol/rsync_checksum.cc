#include "protocol/rsync_checksum.h"

#include <algorithm>

namespace sfs::protocol {

std::uint32_t rolling_checksum(const std::uint8_t* p, std::size_t n) {
    RollingSum r;
    r.init(p, n);
    return r.value();
}

void RollingSum::init(const std::uint8_t* p, std::size_t n) {
    std::uint32_t a = 0, b = 0;
    for (std::size_t i = 0; i < n; ++i) {
        a += static_cast<std::uint32_t>(static_cast<std::int32_t>(static_cast<std::int8_t>(p[i])));
        b += a;
    }
    s1 = a;
    s2 = b;
}

Digest block_strong_sum(const std::uint8_t* p, std::size_t n, std::int32_t seed) {
    Md4 m;
    m.update(p, n);
    if (seed != 0) {
        auto u = static_cast<std::uint32_t>(seed);
        std::uint8_t s[4] = {static_cast<std::uint8_t>(u), static_cast<std::uint8_t>(u >> 8),
                             static_cast<std::uint8_t>(u >> 16), static_cast<std::uint8_t>(u >> 24)};
        m.update(s, 4);
    }
    return m.finish();
}

Md4 file_transfer_sum(std::int32_t seed) {
    Md4 m;
    auto u = static_cast<std::uint32_t>(seed);
    std::uint8_t s[4] = {static_cast<std::uint8_t>(u), static_cast<std::uint8_t>(u >> 8),
                         static_cast<std::uint8_t>(u >> 16), static_cast<std::uint8_t>(u >> 24)};
    m.update(s, 4);
    return m;
}

SumHead sum_sizes_sqroot(std::int64_t len, int protocol, int csum_length, std::int32_t block_size) {
    constexpr int kBlocksumBias = 10;
    SumHead h;
    if (len <= 0) return h;
    std::int32_t blength;
    if (block_size > 0) {
        blength = block_size;
    } else if (len <= static_cast<std::int64_t>(kBlockSize) * kBlockSize) {
        blength = kBlockSize;
    } else {
        std::int32_t max_blength = protocol < 30 ? kOldMaxBlockSize : kMaxBlockSizeP30;
        std::int32_t c = 1;
        for (std::int64_t l = len; l >>= 2;) c <<= 1;
        if (c < 0 || c >= max_blength) {
            blength = max_blength;
        } else {
            blength = 0;
            do {
                blength |= c;
                if (len < static_cast<std::int64_t>(blength) * blength) blength &= ~c;
                c >>= 1;
            } while (c >= 8);
            blength = std::max(blength, kBlockSize);
        }
    }
    int s2length;
    if (csum_length == kSumLength) {
        s2length = kSumLength;
    } else {
        int b = kBlocksumBias;
        for (std::int64_t l = len; l >>= 1;) b += 2;
        for (std::int32_t c = blength; (c >>= 1) && b;) b--;
        s2length = (b + 1 - 32 + 7) / 8;
        s2length = std::max(s2length, csum_length);
        s2length = std::min(s2length, kSumLength);
    }
    h.blength = blength;
    h.s2length = s2length;
    h.remainder = static_cast<std::int32_t>(len % blength);
    h.count = static_cast<std::int32_t>(len / blength + (h.remainder != 0));
    return h;
}

}  // namespace sfs::protocol
