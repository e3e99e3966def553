// The sender's delta search (match.c): find the receiver's basis blocks in our file with
// the rolling checksum, confirm with the strong sum, and emit literal runs and block
// tokens through a TokenWriter. Also the generator's side: the block sums of a basis.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "protocol/rsync_checksum.h"
#include "protocol/rsync_token.h"
#include "protocol/rsync_wire.h"

namespace sfs::protocol {

struct BlockSum {
    std::uint32_t sum1 = 0;
    std::uint8_t sum2[kSumLength] = {};
    std::int32_t len = 0;
};

struct SumSet {
    SumHead head;
    std::vector<BlockSum> blocks;
};

// Reads the sum head and the block sums (receive_sums), bounded: count <= max_blocks,
// blength <= 1<<29, 0 <= s2length <= 16, 0 <= remainder < blength.
Result<SumSet> read_sums(WireReader& in, std::int64_t max_blocks);
// Only the head (what the sender echoes before the tokens), with the same bounds.
Result<SumHead> read_sum_head(WireReader& in, std::int64_t max_blocks);
void write_sum_head(std::string& out, const SumHead& h);

// Writes the sum head and per-block sums of `data` (generate_and_send_sums).
void write_sums(std::string& out, const SumHead& h, const std::uint8_t* data, std::int64_t len,
                std::int32_t seed);

struct MatchStats {
    std::int64_t literal = 0;
    std::int64_t matched = 0;
};

// match_sums(): emits the tokens for `data` and returns the whole-file transfer sum.
// updating_basis (the receiver writes --inplace): never match a block that lies before the
// current offset, since the receiver has already overwritten it.
Result<Digest> match_and_send(TokenWriter& tokens, const SumSet& sums, const std::uint8_t* data,
                              std::int64_t len, std::int32_t seed, MatchStats* stats,
                              bool updating_basis = false);

}  // namespace sfs::protocol
