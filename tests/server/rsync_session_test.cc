// run_rsync_session() over a socketpair with a hand-written protocol-27 client: the redo
// phase after a whole-file checksum mismatch, the sender's phases and statistics, and an
// option error reaching the client. No daemon, so every byte is under the test's control.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "protocol/rsync_checksum.h"
#include "protocol/rsync_match.h"
#include "protocol/rsync_wire.h"
#include "server/rsync/session.h"

namespace sfs::server {
namespace {

namespace fs = std::filesystem;
using protocol::put_i32;

struct Tmp {
    Tmp() {
        char t[] = "/tmp/rsync-session.XXXXXX";
        path = ::mkdtemp(t);
    }
    ~Tmp() { fs::remove_all(path); }
    std::string path;
};

// The client end: plain writes, demultiplexed reads with a 10 s bound per read.
class Client {
public:
    explicit Client(int fd) : fd_(fd) {}
    void send(const std::string& b) { ASSERT_EQ(::write(fd_, b.data(), b.size()), static_cast<ssize_t>(b.size())); }
    bool raw(void* p, std::size_t n) {
        auto* c = static_cast<char*>(p);
        while (n) {
            pollfd pf{fd_, POLLIN, 0};
            if (::poll(&pf, 1, 10000) <= 0) return false;
            ssize_t r = ::read(fd_, c, n);
            if (r <= 0) return false;
            c += r;
            n -= static_cast<std::size_t>(r);
        }
        return true;
    }
    // Reads n bytes of MSG_DATA, collecting other frames into `messages`.
    bool data(void* p, std::size_t n) {
        auto* c = static_cast<char*>(p);
        while (n) {
            if (avail_ == 0) {
                std::uint8_t h[4];
                if (!raw(h, 4)) return false;
                std::uint32_t v = h[0] | (h[1] << 8) | (h[2] << 16) | (static_cast<std::uint32_t>(h[3]) << 24);
                std::size_t len = v & 0xFFFFFF;
                int tag = static_cast<int>(v >> 24) - 7;
                if (tag != 0) {
                    std::string m(len, '\0');
                    if (!raw(m.data(), len)) return false;
                    messages += m;
                    continue;
                }
                avail_ = len;
                continue;
            }
            std::size_t k = std::min(n, avail_);
            if (!raw(c, k)) return false;
            c += k;
            n -= k;
            avail_ -= k;
        }
        return true;
    }
    std::int32_t i32() {
        std::uint8_t b[4] = {0xde, 0xad, 0xbe, 0xef};
        if (!data(b, 4)) return -12345;
        return static_cast<std::int32_t>(b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24));
    }
    std::string messages;

private:
    int fd_;
    std::size_t avail_ = 0;
};

std::string le(std::int32_t v) {
    std::string s;
    put_i32(s, v);
    return s;
}

struct Session {
    Session(const std::string& root, std::vector<std::string> args) {
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        module.name = "web";
        module.path = root;
        module.read_only = false;
        module.am_root = ::geteuid() == 0;
        thread = std::thread([this, args] {
            result = run_rsync_session(sv[1], sv[1], 27, args, module);
            ::shutdown(sv[1], SHUT_RDWR);
        });
    }
    ~Session() {
        ::shutdown(sv[0], SHUT_RDWR);
        if (thread.joinable()) thread.join();
        ::close(sv[0]);
        ::close(sv[1]);
    }
    int sv[2] = {-1, -1};
    ModuleAccess module;
    std::thread thread;
    Result<SessionStats> result = fail("not run");
};

TEST(RsyncSession, ChecksumMismatchIsRedoneWithFullSums) {
    Tmp tmp;
    { std::ofstream(tmp.path + "/f") << "an old basis\n"; }   // 13 bytes: one block
    Session s(tmp.path, {"--server", "-r", ".", "web/"});
    Client c(s.sv[0]);
    std::uint8_t seedb[4];
    ASSERT_TRUE(c.raw(seedb, 4));
    std::int32_t seed = static_cast<std::int32_t>(seedb[0] | (seedb[1] << 8) | (seedb[2] << 16) |
                                                  (static_cast<std::uint32_t>(seedb[3]) << 24));
    const std::string content = "the file content\n";
    // File list: one regular file "f", then end, then io_error.
    std::string fl;
    fl += '\x01';
    fl += '\x01';
    fl += 'f';
    fl += le(static_cast<std::int32_t>(content.size())) + le(1600000000) + le(S_IFREG | 0644);
    fl += '\0';
    fl += le(0);
    c.send(fl);
    // Phase 0: the generator asks for index 0 with short (2-byte) block sums, then -1.
    auto expect_sums = [&](int s2length) {
        EXPECT_EQ(c.i32(), 0);       // index
        EXPECT_EQ(c.i32(), 1);       // count
        EXPECT_EQ(c.i32(), 700);     // block length
        EXPECT_EQ(c.i32(), s2length);
        EXPECT_EQ(c.i32(), 13);      // remainder
        c.i32();                     // rolling sum
        std::string strong(static_cast<std::size_t>(s2length), '\0');
        EXPECT_TRUE(c.data(strong.data(), strong.size()));
    };
    expect_sums(2);
    EXPECT_EQ(c.i32(), -1);
    // Send the file with a wrong whole-file checksum.
    auto file_data = [&](bool good) {
        std::string b = le(0) + le(0) + le(0) + le(0) + le(0);
        b += le(static_cast<std::int32_t>(content.size())) + content + le(0);
        protocol::Md4 m = protocol::file_transfer_sum(seed);
        m.update(content.data(), content.size());
        protocol::Digest d = m.finish();
        if (!good) d[0] ^= 0xFF;
        b.append(reinterpret_cast<const char*>(d.data()), d.size());
        return b;
    };
    c.send(file_data(false));
    // The redo request arrives (phase 1, full 16-byte sums), then we end phase 0.
    expect_sums(16);
    c.send(le(-1));
    EXPECT_EQ(c.i32(), -1);   // end of phase 1
    c.send(file_data(true));
    c.send(le(-1));
    EXPECT_EQ(c.i32(), -1);   // final goodbye
    s.thread.join();
    ASSERT_TRUE(s.result) << s.result.error().message;
    EXPECT_NE(c.messages.find("failed verification"), std::string::npos) << c.messages;
    std::ifstream f(tmp.path + "/f");
    std::string got((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(got, content);
    // No temp file left behind.
    int entries = 0;
    for (const auto& e : fs::directory_iterator(tmp.path)) {
        (void)e;
        ++entries;
    }
    EXPECT_EQ(entries, 1);
}

TEST(RsyncSession, SenderRunsBothPhasesAndSendsStats) {
    Tmp tmp;
    { std::ofstream(tmp.path + "/a") << "alpha\n"; }
    Session s(tmp.path, {"--server", "--sender", "-r", ".", "web/"});
    Client c(s.sv[0]);
    std::uint8_t seedb[4];
    ASSERT_TRUE(c.raw(seedb, 4));
    c.send(le(0));   // empty exclude list
    // File list: "." and "a" (we do not parse it fully here: read until the end byte).
    // Entry 1: flags, len, ".", size(4), mtime(4), mode(4).
    std::uint8_t flags = 0;
    int entries = 0;
    for (;;) {
        ASSERT_TRUE(c.data(&flags, 1));
        if (flags == 0) break;
        ++entries;
        std::uint8_t l1 = 0, l2 = 0;
        if (flags & 0x20) {
            ASSERT_TRUE(c.data(&l1, 1));
        }
        ASSERT_TRUE(c.data(&l2, 1));
        std::string name(l2, '\0');
        ASSERT_TRUE(c.data(name.data(), l2));
        c.i32();                        // size
        if (!(flags & 0x80)) c.i32();   // mtime
        if (!(flags & 0x02)) c.i32();   // mode
    }
    EXPECT_EQ(entries, 2);
    EXPECT_EQ(c.i32(), 0);   // io_error
    // Ask for "a" (index 1 after sorting "." < "a") with no basis.
    c.send(le(1) + le(0) + le(0) + le(2) + le(0));
    EXPECT_EQ(c.i32(), 1);
    for (int i = 0; i < 4; ++i) c.i32();
    EXPECT_EQ(c.i32(), 6);   // literal run
    char lit[6];
    ASSERT_TRUE(c.data(lit, 6));
    EXPECT_EQ(std::string(lit, 6), "alpha\n");
    EXPECT_EQ(c.i32(), 0);   // end of tokens
    char sum[16];
    ASSERT_TRUE(c.data(sum, 16));
    c.send(le(-1));
    EXPECT_EQ(c.i32(), -1);   // phase echo
    c.send(le(-1));
    EXPECT_EQ(c.i32(), -1);   // end of send_files
    std::int32_t read = c.i32(), written = c.i32(), size = c.i32();
    EXPECT_GT(read, 0);
    EXPECT_GT(written, 0);
    EXPECT_EQ(size, 6);
    c.send(le(-1));          // final goodbye
    s.thread.join();
    EXPECT_TRUE(s.result) << s.result.error().message;
}

TEST(RsyncSession, UnknownOptionReachesTheClient) {
    Tmp tmp;
    Session s(tmp.path, {"--server", "--frobnicate", ".", "web/"});
    Client c(s.sv[0]);
    std::uint8_t seedb[4];
    ASSERT_TRUE(c.raw(seedb, 4));
    std::uint8_t b;
    c.data(&b, 1);   // EOF after the message
    EXPECT_NE(c.messages.find("--frobnicate is not supported"), std::string::npos) << c.messages;
    s.thread.join();
    EXPECT_FALSE(s.result);
}

}  // namespace
}  // namespace sfs::server
