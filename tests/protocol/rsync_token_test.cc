// Token streams: the sender's delta (match_and_send) applied by a TokenReader against the
// basis reproduces the new file, plain and deflated, and hostile streams are rejected.
#include <random>

#include <gtest/gtest.h>

#include "protocol/rsync_match.h"
#include "protocol/rsync_token.h"

namespace sfs::protocol {
namespace {

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::vector<std::uint8_t> v(n);
    for (auto& b : v) b = static_cast<std::uint8_t>(rng());
    return v;
}

struct Applied {
    std::vector<std::uint8_t> data;
    Digest sum{};
    std::int64_t blocks = 0;
};

// The receiver side: sums of `basis`, delta of `target`, applied back.
Applied roundtrip(const std::vector<std::uint8_t>& basis, const std::vector<std::uint8_t>& target,
                  bool compress, MatchStats* ms, std::int32_t seed = 0x1234) {
    std::string sums_bytes;
    SumHead h = sum_sizes_sqroot(static_cast<std::int64_t>(basis.size()), 27, kSumLength);
    write_sums(sums_bytes, h, basis.data(), static_cast<std::int64_t>(basis.size()), seed);
    SpanReader sin(sums_bytes);
    auto sums = read_sums(sin, 1 << 20);
    EXPECT_TRUE(sums);
    StringWriter wire;
    Digest sent{};
    {
        TokenWriter tw(wire, compress, 6, 27);
        auto d = match_and_send(tw, *sums, target.data(), static_cast<std::int64_t>(target.size()), seed, ms);
        EXPECT_TRUE(d);
        sent = *d;
        // A second file on the same writer must start a fresh stream.
        auto d2 = match_and_send(tw, *sums, target.data(), static_cast<std::int64_t>(target.size()), seed, nullptr);
        EXPECT_TRUE(d2);
    }
    Applied out;
    SpanReader in(wire.data);
    TokenReader tr(in, compress, 27);
    for (int file = 0; file < 2; ++file) {
        std::vector<std::uint8_t> data;
        Md4 sum = file_transfer_sum(seed);
        for (;;) {
            auto t = tr.next();
            EXPECT_TRUE(t) << t.error().message;
            if (!t || t->kind == Token::end) break;
            if (t->kind == Token::literal) {
                data.insert(data.end(), t->data.begin(), t->data.end());
                sum.update(t->data.data(), t->data.size());
            } else {
                EXPECT_LT(t->index, h.count);
                std::size_t off = static_cast<std::size_t>(t->index) * static_cast<std::size_t>(h.blength);
                std::size_t len = std::min<std::size_t>(static_cast<std::size_t>(h.blength), basis.size() - off);
                EXPECT_TRUE(tr.see_block(basis.data() + off, len));
                data.insert(data.end(), basis.begin() + static_cast<long>(off), basis.begin() + static_cast<long>(off + len));
                sum.update(basis.data() + off, len);
                if (file == 0) ++out.blocks;
            }
        }
        if (file == 0) {
            out.data = data;
            out.sum = sum.finish();
            EXPECT_EQ(out.sum, sent);
        } else {
            EXPECT_EQ(data, out.data);
        }
    }
    EXPECT_EQ(in.remaining(), 0u);
    return out;
}

class TokenRoundTrip : public ::testing::TestWithParam<bool> {};

TEST_P(TokenRoundTrip, SmallChangeInLargeFileMatchesMostBlocks) {
    auto basis = random_bytes(2'000'000, 1);
    auto target = basis;
    for (std::size_t i = 1'000'000; i < 1'004'096; ++i) target[i] ^= 0x5a;   // 4 KiB changed
    target.insert(target.begin() + 500, {'x', 'y', 'z'});                     // shifted data
    MatchStats ms;
    auto got = roundtrip(basis, target, GetParam(), &ms);
    EXPECT_EQ(got.data, target);
    EXPECT_LT(ms.literal, 20'000);
    EXPECT_GT(ms.matched, 1'900'000);
}

TEST_P(TokenRoundTrip, NoBasisSendsEverythingLiteral) {
    std::vector<std::uint8_t> empty;
    auto target = random_bytes(100'000, 2);
    MatchStats ms;
    auto got = roundtrip(empty, target, GetParam(), &ms);
    EXPECT_EQ(got.data, target);
    EXPECT_EQ(ms.literal, 100'000);
}

TEST_P(TokenRoundTrip, CompressibleRunsAndTailBlock) {
    std::vector<std::uint8_t> basis(300'123, 'a');   // identical blocks, short last block
    auto target = basis;
    target[150'000] = 'b';
    target.push_back('z');
    MatchStats ms;
    auto got = roundtrip(basis, target, GetParam(), &ms);
    EXPECT_EQ(got.data, target);
}

TEST_P(TokenRoundTrip, EmptyTarget) {
    auto basis = random_bytes(10'000, 3);
    std::vector<std::uint8_t> target;
    auto got = roundtrip(basis, target, GetParam(), nullptr);
    EXPECT_TRUE(got.data.empty());
}

INSTANTIATE_TEST_SUITE_P(PlainAndDeflate, TokenRoundTrip, ::testing::Values(false, true));

TEST(RsyncToken, DeflatedStreamUsesRsyncFlags) {
    StringWriter w;
    TokenWriter tw(w, true, 6, 27);
    const std::uint8_t lit[] = "hello hello hello";
    ASSERT_TRUE(tw.send(-2, lit, sizeof lit - 1, nullptr, 0));
    ASSERT_TRUE(tw.send(0, nullptr, 0, lit, 5));
    ASSERT_TRUE(tw.send(1, nullptr, 0, lit, 5));
    ASSERT_TRUE(tw.send(-1, nullptr, 0, nullptr, 0));
    ASSERT_GE(w.data.size(), 4u);
    EXPECT_EQ(static_cast<std::uint8_t>(w.data[0]) & 0xC0, 0x40);   // DEFLATED_DATA
    // ... then a TOKENRUN_REL for blocks 0..1 (run of 1) and END_FLAG.
    EXPECT_EQ(static_cast<std::uint8_t>(w.data[w.data.size() - 4]), 0xC0);
    EXPECT_EQ(w.data[w.data.size() - 3], 1);
    EXPECT_EQ(w.data[w.data.size() - 2], 0);
    EXPECT_EQ(w.data.back(), 0);
}

TEST(RsyncToken, RejectsHostileStreams) {
    // Garbage deflate data.
    std::string bad = "\x40\x04\xff\xff\xff\xff";
    SpanReader in(bad);
    TokenReader tr(in, true, 27);
    bool failed = false;
    for (int i = 0; i < 5 && !failed; ++i) {
        auto t = tr.next();
        if (!t) failed = true;
        else if (t->kind == Token::end) break;
    }
    EXPECT_TRUE(failed);
    // Unknown flag byte.
    std::string flag = "\x10";
    SpanReader in2(flag);
    TokenReader tr2(in2, true, 27);
    EXPECT_FALSE(tr2.next());
    // Truncated literal.
    std::string lit;
    put_i32(lit, 100);
    lit += "abc";
    SpanReader in3(lit);
    TokenReader tr3(in3, false, 27);
    EXPECT_FALSE(tr3.next());
    // Sum header with absurd values.
    for (auto vals : std::vector<std::array<std::int32_t, 4>>{
             {-1, 700, 2, 0}, {10, -5, 2, 0}, {10, 700, 17, 0}, {10, 700, 2, 700}, {1 << 30, 700, 2, 0}}) {
        std::string s;
        for (auto v : vals) put_i32(s, v);
        SpanReader sin(s);
        EXPECT_FALSE(read_sums(sin, 1 << 22));
    }
}

}  // namespace
}  // namespace sfs::protocol
