// Wire integers, mux framing and checksums against known values.
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "protocol/rsync_checksum.h"
#include "protocol/rsync_wire.h"

namespace sfs::protocol {
namespace {

TEST(RsyncWire, IntegersAreLittleEndian) {
    std::string b;
    put_i32(b, 0x01020304);
    put_i32(b, -1);
    EXPECT_EQ(b, std::string("\x04\x03\x02\x01\xff\xff\xff\xff", 8));
    SpanReader in(b);
    EXPECT_EQ(*in.read_i32(), 0x01020304);
    EXPECT_EQ(*in.read_i32(), -1);
    EXPECT_FALSE(in.read_u8());
}

TEST(RsyncWire, LongintUsesEscapeAbove31Bits) {
    std::string small, big;
    put_longint(small, 0x7fffffff);
    EXPECT_EQ(small.size(), 4u);
    put_longint(big, 0x123456789LL);
    ASSERT_EQ(big.size(), 12u);
    EXPECT_EQ(big.substr(0, 4), std::string("\xff\xff\xff\xff", 4));
    SpanReader in(big);
    EXPECT_EQ(*in.read_longint(), 0x123456789LL);
    std::string trunc = big.substr(0, 8);
    SpanReader t(trunc);
    EXPECT_FALSE(t.read_longint());
}

TEST(RsyncWire, ReadBytesIsBounded) {
    std::string b(10, 'x');
    SpanReader in(b);
    EXPECT_FALSE(in.read_bytes(11, 100, "x"));   // truncated
    SpanReader in2(b);
    EXPECT_FALSE(in2.read_bytes(5, 4, "x"));     // over the caller's bound
    SpanReader in3(b);
    EXPECT_FALSE(in3.read_bytes(-1, 4, "x"));
}

TEST(RsyncWire, MuxFramesDataAndMessages) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    {
        MuxWriter w(sv[0]);
        ASSERT_TRUE(w.write_i32(42));
        ASSERT_TRUE(w.send_msg(MsgTag::error_xfer, "oops\n"));
        ASSERT_TRUE(w.flush());
    }
    ::close(sv[0]);
    FdReader r(sv[1], "test");
    auto h1 = r.read_i32();
    ASSERT_TRUE(h1);
    EXPECT_EQ(static_cast<std::uint32_t>(*h1), (7u << 24) | 4u);   // MSG_DATA, 4 bytes
    EXPECT_EQ(*r.read_i32(), 42);
    auto h2 = r.read_i32();
    EXPECT_EQ(static_cast<std::uint32_t>(*h2), (8u << 24) | 5u);   // MSG_ERROR_XFER
    EXPECT_EQ(*r.read_bytes(5, 5, "msg"), "oops\n");
    EXPECT_FALSE(r.read_u8());
    ::close(sv[1]);
}

TEST(RsyncChecksum, RollingSumKnownValues) {
    // get_checksum1 over signed chars: "abc" -> s1 = 294, s2 = 97 + 195 + 294 = 586.
    const std::uint8_t abc[] = {'a', 'b', 'c'};
    EXPECT_EQ(rolling_checksum(abc, 3), (586u << 16) | 294u);
    // A byte >= 0x80 counts negative: 0xff -> -1.
    const std::uint8_t ff[] = {0xff};
    EXPECT_EQ(rolling_checksum(ff, 1), 0xffffffffu);
}

TEST(RsyncChecksum, RollingMatchesRecompute) {
    std::vector<std::uint8_t> d(5000);
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<std::uint8_t>(i * 7919 % 251 + (i & 1 ? 128 : 0));
    const std::size_t k = 700;
    RollingSum r;
    r.init(d.data(), k);
    for (std::size_t off = 0; off + k < d.size(); ++off) {
        ASSERT_EQ(r.value(), rolling_checksum(d.data() + off, k)) << off;
        r.roll(d[off], d[off + k], k);
    }
}

TEST(RsyncChecksum, Md4KnownAnswers) {
    // RFC 1320 test vectors.
    Md4 m;
    m.update("abc", 3);
    Digest d = m.finish();
    const std::uint8_t want[16] = {0xa4, 0x48, 0x01, 0x7a, 0xaf, 0x21, 0xd8, 0x52,
                                   0x5f, 0xc1, 0x0a, 0xe8, 0x7a, 0xa6, 0x72, 0x9d};
    EXPECT_EQ(0, std::memcmp(d.data(), want, 16));
    // The seed is appended for block sums and prepended for the file sum.
    Md4 a;
    a.update("abc\x01\x00\x00\x00", 7);
    EXPECT_EQ(block_strong_sum(reinterpret_cast<const std::uint8_t*>("abc"), 3, 1), a.finish());
    Md4 b;
    b.update("\x01\x00\x00\x00" "abc", 7);
    Md4 f = file_transfer_sum(1);
    f.update("abc", 3);
    EXPECT_EQ(f.finish(), b.finish());
}

TEST(RsyncChecksum, BlockSizesFollowSumSizesSqroot) {
    auto h = sum_sizes_sqroot(100, 27, 2);
    EXPECT_EQ(h.blength, 700);
    EXPECT_EQ(h.count, 1);
    EXPECT_EQ(h.remainder, 100);
    EXPECT_EQ(h.s2length, 2);
    auto g = sum_sizes_sqroot(1LL << 30, 27, 2);
    EXPECT_EQ(g.blength, 32768);   // sqrt(1 GiB), multiple of 8
    EXPECT_EQ(g.count, 32768);
    EXPECT_EQ(g.remainder, 0);
    EXPECT_GE(g.s2length, 2);
    EXPECT_LE(g.s2length, 16);
    EXPECT_EQ(sum_sizes_sqroot(1LL << 30, 27, 16).s2length, 16);
    EXPECT_EQ(sum_sizes_sqroot(0, 27, 2).count, 0);
}

}  // namespace
}  // namespace sfs::protocol
