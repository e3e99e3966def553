// Hostile and truncated native-protocol bytes against the real syncfsd: one real replication
// session (MirrorLink, the replicator's own client) is recorded through a loopback proxy -
// every kind of mutation, a literal and a (garbage) delta content transfer, xattrs, a
// listing and a signature request - then replayed with seeded mutations (cut at a random
// byte, bytes overwritten or inserted, huge integers, repeated slices). No connection
// process may die of a signal, nothing may appear outside the module, every session must
// end within its bound, and the daemon must still apply a real session correctly.
#include <sys/mount.h>

#include <filesystem>

#include "fmt/format.h"
#include "protocol/native/content_hash.h"
#include "replicator/mirror_link.h"
#include "tests/support/session_fuzz.h"

namespace sfs::test {
namespace {

namespace pn = protocol::native;
namespace stdfs = std::filesystem;
using repl::MirrorLink;

pn::Hash128 hash_of(std::string_view data) { return pn::ContentHasher::of(data); }

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

// Waits for the Done of Barrier `id`; false on a broken connection or timeout.
bool barrier(MirrorLink& link, std::uint64_t id) {
    if (!link.send(pn::Barrier{id, false})) return false;
    for (;;) {
        auto m = link.read_reply(std::chrono::seconds(20));
        if (!m || !*m) return false;
        if (auto* d = std::get_if<pn::Done>(&**m); d && d->id == id) return true;
    }
}

// One session using every message the client sends. Seqs start at `seq0`.
void exercise(MirrorLink& link, std::uint64_t seq0) {
    std::uint64_t s = seq0;
    const std::string page = "<html>fuzz</html>\n";
    const pn::Timestamp t{1700000000, 5};
    ASSERT_TRUE(link.queue(pn::Mkdir{s++, "d", 0755, 0, 0}));
    ASSERT_TRUE(link.queue(pn::ContentBegin{s, "d/page", pn::ContentEncoding::Literal, 0644, 0, 0, page.size(), t, t}));
    ASSERT_TRUE(link.queue(pn::ContentChunk{s, bytes_of(page)}));
    ASSERT_TRUE(link.queue(pn::ContentCommit{s++, hash_of(page)}));
    ASSERT_TRUE(link.queue(pn::WriteRange{s++, "d/page", 6, bytes_of("FUZZ")}));
    ASSERT_TRUE(link.queue(pn::Symlink{s++, "d/ln", "page", 0, 0}));
    ASSERT_TRUE(link.queue(pn::Link{s++, "d/hard", "d/page"}));
    ASSERT_TRUE(link.queue(pn::Setxattr{s++, "d/page", "user.k", std::string("v\0w", 3)}));
    ASSERT_TRUE(link.queue(pn::Setattr{s++, "d/page", pn::kAttrAll, 0600, 0, 0, 4, t, t}));
    ASSERT_TRUE(link.queue(pn::Rename{s++, "d/hard", "d/hard2", 0}));
    // A delta against the current file whose bytes are not a librsync delta at all.
    ASSERT_TRUE(link.queue(pn::ContentBegin{s, "d/page", pn::ContentEncoding::Delta, 0644, 0, 0, 10, t, t}));
    ASSERT_TRUE(link.queue(pn::ContentChunk{s, bytes_of("rs\x02\x36 not a delta")}));
    ASSERT_TRUE(link.queue(pn::ContentCommit{s++, hash_of("0123456789")}));
    ASSERT_TRUE(link.queue(pn::ContentBegin{s, "d/aborted", pn::ContentEncoding::Literal, 0644, 0, 0, 4, t, t}));
    ASSERT_TRUE(link.queue(pn::ContentAbort{s++}));
    ASSERT_TRUE(link.queue(pn::Removexattr{s++, "d/page", "user.k"}));
    ASSERT_TRUE(link.queue(pn::Unlink{s++, "d/ln"}));
    ASSERT_TRUE(link.queue(pn::ListRequest{1, "", 0}));
    ASSERT_TRUE(link.queue(pn::SignatureRequest{2, "d/page", 0}));
    ASSERT_TRUE(link.flush());
    ASSERT_TRUE(barrier(link, 3));
}

TEST(NativeFuzz, MutatedRealSessionsNeverCrashEscapeOrWedgeTheDaemon) {
    if (::geteuid() != 0) GTEST_SKIP() << "uid = root in the module needs root";
    TempDir dir;
    // The module lives on a small private tmpfs: a mutated ContentBegin announces any size,
    // and the server reserves it with fallocate - on the shared disk that could briefly take
    // the space other tests running alongside need.
    stdfs::create_directories(dir / "top");
    ASSERT_EQ(::mount("tmpfs", (dir / "top").c_str(), "tmpfs", 0, "size=64m,mode=0755"), 0) << std::strerror(errno);
    struct Unmount {
        std::string path;
        ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
    } unmount{dir / "top"};
    const std::string module = dir / "top/mirror";
    stdfs::create_directories(module);
    stdfs::create_directories(dir / "state");
    Daemon daemon(dir, fmt::format("use chroot = no\nuid = root\ngid = root\ntimeout = 15\n"
                                   "[web]\npath = {}\nread only = no\nmunge symlinks = no\nsyncfs state dir = {}\n",
                                   module, dir / "state"));
    ASSERT_GT(daemon.pid(), 0) << daemon.log();

    RecordingProxy proxy(daemon.port());
    std::string recorded;
    {
        std::thread pump([&] {
            RunResult unused;
            recorded = proxy.record("true", unused);  // the client below connects meanwhile
        });
        auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/web", proxy.port()), "", "fuzz:/src");
        ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << daemon.log();
        exercise(**link, 1);
        link->reset();
        pump.join();
    }
    ASSERT_GT(recorded.size(), 200u);
    EXPECT_EQ(read_file(module + "/d/page").substr(0, 4), "<htm");  // the real session applied
    const std::size_t keep = recorded.find('\n') + 1;                // the SYNCFS line

    std::mt19937_64 rng(0x7a71e);
    constexpr int kSessions = 600;
    std::size_t connections = 2;  // the harness's startup probe and the recorded session
    EndedConnections ended(dir / "syncfsd.log");
    int abandoned = 0;
    for (int i = 0; i < kSessions; ++i) {
        // Forget the stream's applied position, so that the replayed mutations are applied
        // again instead of being skipped as already done, and start from an empty module (a
        // mutated Setattr size leaves a sparse file of up to 16 TiB that a later
        // SignatureRequest then legitimately reads and hashes).
        for (const auto& e : stdfs::directory_iterator(dir / "state")) stdfs::remove_all(e.path());
        for (const auto& e : stdfs::directory_iterator(module)) stdfs::remove_all(e.path());
        std::string hostile = mutate(recorded, keep, rng);
        auto took = replay(daemon.port(), hostile, std::chrono::seconds(2));
        ASSERT_GE(took.count(), 0) << "the daemon stopped accepting at session " << i << "\n" << daemon.log();
        ++connections;
        // A session still busy when the client hangs up must notice and end (below).
        if (took >= std::chrono::seconds(2)) ++abandoned;
        // Its stream lock must be free again before the next session starts.
        ASSERT_TRUE(ended.wait_for(connections, std::chrono::seconds(10)))
            << "session " << i << " did not end after its client hung up\n" << daemon.log();
    }
    EXPECT_LT(abandoned, kSessions / 20) << "sessions still busy after 2 s";
    EXPECT_EQ(daemon.log().find("killed by signal"), std::string::npos) << daemon.log();
    for (const auto& e : stdfs::directory_iterator(dir / "top")) {
        EXPECT_EQ(e.path().filename(), "mirror") << "created outside the module: " << e.path();
    }
    ASSERT_EQ(::waitpid(daemon.pid(), nullptr, WNOHANG), 0) << "syncfsd exited\n" << daemon.log();

    // A real session still applies, on a fresh stream.
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/web", daemon.port()), "", "after:/src");
    ASSERT_TRUE(link.has_value()) << link.error().message;
    const std::string text = "still serving\n";
    const pn::Timestamp t{1700000000, 0};
    ASSERT_TRUE((*link)->queue(pn::Mkdir{1, "after", 0755, 0, 0}));
    ASSERT_TRUE((*link)->queue(pn::ContentBegin{2, "after/f", pn::ContentEncoding::Literal, 0644, 0, 0, text.size(), t, t}));
    ASSERT_TRUE((*link)->queue(pn::ContentChunk{2, bytes_of(text)}));
    ASSERT_TRUE((*link)->queue(pn::ContentCommit{2, hash_of(text)}));
    ASSERT_TRUE((*link)->flush());
    ASSERT_TRUE(barrier(**link, 9));
    EXPECT_EQ(read_file(module + "/after/f"), text);
}

}  // namespace
}  // namespace sfs::test
