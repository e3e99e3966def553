// rsync checksums as protocol 27 uses them (checksum.c, CSUM_MD4_OLD):
//  - rolling "checksum1": rsync's Adler-like sum over *signed* chars, CHAR_OFFSET 0;
//  - block strong sum: MD4(block || seed as int32 LE), the seed omitted when it is 0;
//  - whole-file transfer sum: MD4(seed as int32 LE || file) (sum_init always adds the seed);
//  - --checksum file-list sum: plain MD4 of the file.
// Block sizing follows generator.c sum_sizes_sqroot.
#pragma once

#include <md4.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace sfs::protocol {

inline constexpr int kSumLength = 16;       // SUM_LENGTH: full MD4
inline constexpr int kShortSumLength = 2;   // SHORT_SUM_LENGTH: first pass csum_length
inline constexpr std::int32_t kBlockSize = 700;
inline constexpr std::int32_t kOldMaxBlockSize = 1 << 29;   // protocol < 30
inline constexpr std::int32_t kMaxBlockSizeP30 = 1 << 17;
using Digest = std::array<std::uint8_t, kSumLength>;

// get_checksum1.
std::uint32_t rolling_checksum(const std::uint8_t* p, std::size_t n);

// The rolling state of match.c: slide the window one byte at a time.
struct RollingSum {
    std::uint32_t s1 = 0, s2 = 0;
    void init(const std::uint8_t* p, std::size_t n);
    // Drops `out` (first byte of a window of length n) and appends `in`.
    void roll(std::uint8_t out, std::uint8_t in, std::size_t n) {
        auto o = static_cast<std::uint32_t>(static_cast<std::int32_t>(static_cast<std::int8_t>(out)));
        auto i = static_cast<std::uint32_t>(static_cast<std::int32_t>(static_cast<std::int8_t>(in)));
        s1 = s1 - o + i;
        s2 = s2 - static_cast<std::uint32_t>(n) * o + s1;
    }
    // Drops `out` without appending (window shrinks at end of file).
    void shrink(std::uint8_t out, std::size_t n) {
        auto o = static_cast<std::uint32_t>(static_cast<std::int32_t>(static_cast<std::int8_t>(out)));
        s1 -= o;
        s2 -= static_cast<std::uint32_t>(n) * o;
    }
    std::uint32_t value() const { return (s1 & 0xFFFF) | (s2 << 16); }
};

// get_checksum2 for MD4 at protocol 27.
Digest block_strong_sum(const std::uint8_t* p, std::size_t n, std::int32_t seed);

// Incremental MD4 (sum_init/sum_update/sum_end).
class Md4 {
public:
    Md4() { MD4Init(&ctx_); }
    void update(const void* p, std::size_t n) {
        MD4Update(&ctx_, static_cast<const std::uint8_t*>(p), n);
    }
    Digest finish() {
        Digest d{};
        MD4Final(d.data(), &ctx_);
        return d;
    }

private:
    MD4_CTX ctx_;
};

// The transfer sum: MD4 seeded with the 4 LE bytes of the seed first.
Md4 file_transfer_sum(std::int32_t seed);

struct SumHead {
    std::int32_t count = 0;
    std::int32_t blength = 0;
    std::int32_t s2length = 0;
    std::int32_t remainder = 0;
};

// sum_sizes_sqroot for a basis of `len` bytes; csum_length is 2 in the first pass, 16 in
// the redo pass. block_size > 0 forces the block length (-B).
SumHead sum_sizes_sqroot(std::int64_t len, int protocol, int csum_length, std::int32_t block_size = 0);

}  // namespace sfs::protocol
