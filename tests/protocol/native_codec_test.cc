// Native protocol codec: every message round-trips; truncated, extended, bit-flipped and
// random frames are rejected with an error (never a crash: run under ASan/UBSan in CI).
#include <gtest/gtest.h>

#include <random>

#include "protocol/native/messages.h"

namespace sfs::protocol::native {
namespace {

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<Message> samples() {
    Hash128 h{};
    for (int i = 0; i < 16; ++i) h[i] = static_cast<std::uint8_t>(i * 17);
    ListEntry file{"dir/a.txt", NodeType::Regular, 0100644, 1000, 1000, 12345, {1700000000, 123456789}, 0, 2, 99, "", h};
    ListEntry link{"dir/l", NodeType::Symlink, 0120777, 0, 0, 5, {1, 0}, 0, 1, 7, "a.txt", std::nullopt};
    ListEntry root{"", NodeType::Directory, 040755, 0, 0, 4096, {2, 5}, 0, 3, 2, "", std::nullopt};
    return {
        Hello{kHelloMagic, 1, 0, "host:/data->mirror::web"},
        HelloReply{1, kCapOwner | kCapDelta, kMaxFramePayload, 42},
        Fatal{EPROTO, "bad frame"},
        Mkdir{1, "a/b", 0755, 1, 2},
        Create{2, "a/b/c", 0644, 3, 4},
        Mknod{3, "fifo", 010644, 0, 0, 0},
        Mknod{4, "dev", 020600, 0x0801, 0, 6},
        Symlink{5, "a/l", "../x/y", 7, 8},
        Link{6, "a/h", "a/b/c"},
        Rename{7, "a/b", "a/c", kRenameNoReplace},
        Unlink{8, "a/h"},
        Rmdir{9, "a/c"},
        Setattr{10, "", kAttrAll, 01777, 1, 2, 1ull << 40, {-5, 999999999}, {1700000000, 1}},
        Setxattr{11, "a", "user.k", std::string("v\0x", 3)},
        Setxattr{12, "a", "user.empty", ""},
        Removexattr{13, "a", "user.k"},
        WriteRange{14, "big", 1ull << 32, bytes_of("hello")},
        WriteRange{15, "big", 0, {}},
        ContentBegin{16, "f", ContentEncoding::Delta, 0600, 1, 1, 77, {1, 2}, {3, 4}},
        ContentChunk{16, std::vector<std::uint8_t>(kMaxChunk, 0xab)},
        ContentCommit{16, h},
        ContentAbort{17},
        SignatureRequest{1, "big", 2048, 8},
        ListRequest{2, "", kListRecursive | kListChecksums},
        Fsync{3, "f"},
        Barrier{4, true},
        Barrier{5, false},
        Ack{17, kAckCumulative | kAckDurable, 0, ""},
        Ack{12, 0, ENOSPC, "write \"a\": No space left on device"},
        SignatureChunk{1, bytes_of("rs\x01\x36")},
        ListChunk{2, {root, file, link}},
        Done{3, 0, kDoneDurable, 17, 12345, {6, 7}, ""},
    };
}

Message decode_one(const std::vector<std::uint8_t>& frame) {
    FrameDecoder d;
    d.feed(frame);
    auto m = d.next();
    EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().message);
    EXPECT_TRUE(m && m->has_value());
    EXPECT_EQ(d.buffered(), 0u);
    return **m;
}

TEST(NativeCodec, EveryMessageRoundTrips) {
    for (const Message& m : samples()) {
        auto frame = encode(m);
        ASSERT_TRUE(frame.has_value()) << to_string(type_of(m)) << ": " << frame.error().message;
        EXPECT_EQ((*frame)[4], static_cast<std::uint8_t>(type_of(m)));
        EXPECT_EQ(decode_one(*frame), m) << to_string(type_of(m));
    }
}

TEST(NativeCodec, ManyFramesInOneStreamFedByteByByte) {
    std::vector<std::uint8_t> stream;
    auto all = samples();
    for (const Message& m : all) ASSERT_TRUE(encode(m, stream).has_value());
    FrameDecoder d;
    std::vector<Message> got;
    for (std::uint8_t b : stream) {
        d.feed(std::span<const std::uint8_t>(&b, 1));
        for (;;) {
            auto m = d.next();
            ASSERT_TRUE(m.has_value()) << m.error().message;
            if (!m->has_value()) break;
            got.push_back(std::move(**m));
        }
    }
    EXPECT_EQ(got, all);
}

TEST(NativeCodec, EveryTruncationIsRejectedAndEveryExtensionToo) {
    for (const Message& m : samples()) {
        auto frame = *encode(m);
        std::span<const std::uint8_t> payload(frame.data() + kFrameHeaderSize, frame.size() - kFrameHeaderSize);
        // Step through prefixes (all of them for small frames).
        std::size_t step = payload.size() > 4096 ? 997 : 1;
        for (std::size_t n = 0; n < payload.size(); n += step)
            EXPECT_FALSE(decode(frame[4], payload.first(n)).has_value()) << to_string(type_of(m)) << " cut at " << n;
        std::vector<std::uint8_t> longer(payload.begin(), payload.end());
        longer.push_back(0);
        auto r = decode(frame[4], longer);
        ASSERT_FALSE(r.has_value()) << to_string(type_of(m));
        EXPECT_NE(r.error().message.find("trailing"), std::string::npos) << r.error().message;
    }
}

TEST(NativeCodec, OversizedFrameLengthIsRejectedBeforeBuffering) {
    std::vector<std::uint8_t> frame = {0xff, 0xff, 0xff, 0x7f, static_cast<std::uint8_t>(MsgType::Mkdir)};
    FrameDecoder d;
    d.feed(frame);
    auto r = d.next();
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("exceeds the cap"), std::string::npos);
}

TEST(NativeCodec, UnknownTypeIsRejected) {
    auto r = decode(0x7e, {});
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("unknown frame type 0x7e"), std::string::npos);
}

TEST(NativeCodec, HostileFieldValuesAreRejected) {
    auto reject = [](const Message& m) {
        // encode refuses, and a hand-built frame with the same bytes is refused by decode.
        EXPECT_FALSE(encode(m).has_value()) << to_string(type_of(m));
    };
    reject(Mkdir{1, "../etc", 0755, 0, 0});
    reject(Mkdir{1, "/etc", 0755, 0, 0});
    reject(Mkdir{1, "a/../../b", 0755, 0, 0});
    reject(Mkdir{1, "a//b", 0755, 0, 0});
    reject(Mkdir{1, "a/./b", 0755, 0, 0});
    reject(Mkdir{1, "a/", 0755, 0, 0});
    reject(Mkdir{1, "", 0755, 0, 0});
    reject(Mkdir{1, std::string("a\0b", 3), 0755, 0, 0});
    reject(Mkdir{1, std::string(256, 'x'), 0755, 0, 0});
    reject(Mkdir{1, "a", 040755, 0, 0});
    reject(Rename{1, "a", "b", kRenameAll});
    reject(Rename{1, "a", "b", 8});
    reject(Symlink{1, "l", "", 0, 0});
    reject(Setattr{1, "a", 64, 0, 0, 0, 0, {}, {}});
    reject(Setattr{1, "a", kAttrMtime, 0, 0, 0, 0, {}, {0, 1000000000}});
    reject(Mknod{1, "d", 040755, 0, 0, 0});
    reject(ContentChunk{1, {}});
    reject(Ack{1, kAckCumulative, EIO, ""});
    reject(Ack{1, 0, 0, ""});
    reject(Hello{kHelloMagic, 1, 0, "has space"});
    reject(Hello{0x1234, 1, 0, "id"});
    reject(WriteRange{1, "f", 0, std::vector<std::uint8_t>(kMaxChunk + 1)});
}

TEST(NativeCodec, HandBuiltPathTraversalFrameIsRejected) {
    // Mkdir{seq 1, "..", mode 0755, uid 0, gid 0} written by hand, as a hostile peer would.
    std::vector<std::uint8_t> p = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, '.', '.', 0xed, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    auto r = decode(static_cast<std::uint8_t>(MsgType::Mkdir), p);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("'..'"), std::string::npos) << r.error().message;
    // A string length far beyond the payload.
    std::vector<std::uint8_t> q = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 'a'};
    EXPECT_FALSE(decode(static_cast<std::uint8_t>(MsgType::Unlink), q).has_value());
    // ListChunk claiming 4 billion entries.
    std::vector<std::uint8_t> l = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    EXPECT_FALSE(decode(static_cast<std::uint8_t>(MsgType::ListChunk), l).has_value());
}

TEST(NativeCodec, RandomAndBitFlippedInputNeverCrashes) {
    std::mt19937_64 rng(20261125);
    auto all = samples();
    std::size_t accepted = 0;
    for (int round = 0; round < 20000; ++round) {
        std::vector<std::uint8_t> frame;
        if (round % 2 == 0) {
            frame = *encode(all[rng() % all.size()]);
            if (frame.size() > 8192) frame.resize(8192);  // keep the big chunk cheap
            int flips = 1 + static_cast<int>(rng() % 4);
            for (int i = 0; i < flips; ++i) frame[rng() % frame.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        } else {
            frame.resize(rng() % 96);
            for (auto& b : frame) b = static_cast<std::uint8_t>(rng());
        }
        FrameDecoder d;
        d.feed(frame);
        for (int k = 0; k < 4; ++k) {
            auto m = d.next();
            if (!m || !m->has_value()) break;
            ++accepted;
            // Whatever is accepted must re-encode to a valid frame.
            EXPECT_TRUE(encode(**m).has_value());
        }
    }
    SUCCEED() << accepted << " mutated frames happened to be valid";
}

TEST(NativeCodec, OversizedListChunkCannotBeEncoded) {
    ListChunk c{1, {}};
    ListEntry e{std::string(200, 'a'), NodeType::Symlink, 0120777, 0, 0, 1, {}, 0, 1, 1, std::string(4095, 't'), std::nullopt};
    c.entries.assign(1100, e);  // ~4.6 MB
    auto r = encode(c);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EMSGSIZE);
}

TEST(NativeCodec, SeqOfMutationsOnly) {
    EXPECT_EQ(seq_of(Unlink{9, "a"}), 9u);
    EXPECT_EQ(seq_of(ContentChunk{5, {1}}), 5u);
    EXPECT_EQ(seq_of(Barrier{9, true}), std::nullopt);
    EXPECT_EQ(seq_of(Ack{9, kAckCumulative, 0, ""}), std::nullopt);
}

}  // namespace
}  // namespace sfs::protocol::native
