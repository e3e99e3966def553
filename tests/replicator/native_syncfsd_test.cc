// The native protocol end to end against the real syncfsd binary on 127.0.0.1: MirrorLink
// connects, authenticates through the daemon's shared access-control code, and the daemon's
// native session applies ops to the module. Also: wrong password, unknown module, read only,
// chroot, and the per-connection byte counts in the daemon's log.

#include <cstring>

#include "fmt/format.h"
#include "protocol/native/content_hash.h"
#include "replicator/mirror_link.h"
#include "tests/server/daemon_harness.h"

namespace sfs::test {
namespace {

namespace pn = protocol::native;
using repl::MirrorLink;

pn::Hash128 hash_of(std::string_view data) { return pn::ContentHasher::of(data); }

struct Mirror {
    TempDir dir;
    std::string module = dir / "mirror";
    std::string state = dir / "state";
    std::string secrets = dir / "secrets";
    std::string password_file = dir / "password";
    Mirror() {
        std::filesystem::create_directories(module);
        write_file(secrets, "alice:open sesame\nbob:bobpw\n", 0600);
        write_file(password_file, "open sesame\n", 0600);
    }
    std::string config(const std::string& extra = "") const {
        return fmt::format(
            "lock file = {}/lock\n"
            "[web]\n"
            "path = {}\n"
            "read only = no\n"
            "uid = root\n"
            "gid = root\n"
            "use chroot = no\n"
            "munge symlinks = no\n"
            "auth users = alice, bob:ro\n"
            "secrets file = {}\n"
            "syncfs state dir = {}\n"
            "{}",
            dir.path(), module, secrets, state, extra);
    }
};

// The connection's log line is written after the client saw the reply: wait up to 5 s.
bool log_has(const Daemon& d, const std::string& text) {
    for (int i = 0; i < 100; ++i) {
        if (d.log().find(text) != std::string::npos) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

// Sends a Barrier and returns its Done; error acks seen on the way go to `errors`.
std::optional<pn::Done> barrier(MirrorLink& link, std::uint64_t id, std::vector<pn::Ack>* errors = nullptr,
                                bool durable = false) {
    if (!link.send(pn::Barrier{id, durable})) return std::nullopt;
    for (;;) {
        auto m = link.read_reply(std::chrono::seconds(20));
        if (!m || !*m) return std::nullopt;
        if (auto* d = std::get_if<pn::Done>(&**m); d && d->id == id) return *d;
        if (auto* a = std::get_if<pn::Ack>(&**m); a && errors && !(a->flags & pn::kAckCumulative)) errors->push_back(*a);
    }
}

TEST(NativeSyncfsd, AuthenticatedReplicationAppliesOps) {
    if (::geteuid() != 0) GTEST_SKIP() << "uid = root in the module needs root";
    Mirror s;
    Daemon d(s.dir, s.config());
    ASSERT_GT(d.pid(), 0) << d.log();
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/web", d.port()), s.password_file, "host-a:/data");
    ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << d.log();
    EXPECT_EQ((*link)->hello().applied_seq, 0u);
    EXPECT_FALSE((*link)->hello().caps & pn::kCapReadOnly);
    ASSERT_TRUE((*link)->queue(pn::Mkdir{1, "site", 0755, 33, 33}));
    std::string page = "<html>hello</html>\n";
    ASSERT_TRUE((*link)->queue(pn::ContentBegin{2, "site/index.html", pn::ContentEncoding::Literal, 0644, 33, 33,
                                                 page.size(), {1700000000, 0}, {1700000000, 0}}));
    ASSERT_TRUE((*link)->queue(pn::ContentChunk{2, {page.begin(), page.end()}}));
    ASSERT_TRUE((*link)->queue(pn::ContentCommit{2, hash_of(page)}));
    ASSERT_TRUE((*link)->queue(pn::Symlink{3, "site/home.html", "index.html", 33, 33}));
    ASSERT_TRUE((*link)->flush());
    std::vector<pn::Ack> errors;
    auto done = barrier(**link, 1, &errors, /*durable=*/true);
    ASSERT_TRUE(done.has_value()) << d.log();
    EXPECT_EQ(done->applied_seq, 3u);
    EXPECT_TRUE(done->flags & pn::kDoneDurable);
    for (auto& e : errors) ADD_FAILURE() << e.message;
    EXPECT_EQ(read_file(s.module + "/site/index.html"), page);
    struct stat st{};
    ASSERT_EQ(::stat((s.module + "/site/index.html").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 33u);
    EXPECT_EQ(st.st_mtime, 1700000000);
    EXPECT_EQ(std::filesystem::read_symlink(s.module + "/site/home.html"), "index.html");
    // The stream's position survives the connection: a new one resumes after seq 3.
    link->reset();
    auto again = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/web", d.port()), s.password_file, "host-a:/data");
    ASSERT_TRUE(again.has_value()) << again.error().message;
    EXPECT_EQ((*again)->hello().applied_seq, 3u);
    again->reset();
    EXPECT_TRUE(log_has(d, "protocol=native")) << d.log();
    EXPECT_TRUE(log_has(d, "user=alice")) << d.log();
}

TEST(NativeSyncfsd, WrongPasswordIsRefused) {
    Mirror s;
    write_file(s.password_file, "not it\n", 0600);
    Daemon d(s.dir, s.config());
    ASSERT_GT(d.pid(), 0);
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/web", d.port()), s.password_file, "x");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find("auth failed"), std::string::npos) << link.error().message;
    EXPECT_NE(link.error().message.find(fmt::format("alice@127.0.0.1:{}/web", d.port())), std::string::npos);
    EXPECT_TRUE(log_has(d, "auth failed")) << d.log();
}

TEST(NativeSyncfsd, UnknownModuleIsRefused) {
    Mirror s;
    Daemon d(s.dir, s.config());
    ASSERT_GT(d.pid(), 0);
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/nope", d.port()), s.password_file, "x");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find("Unknown module"), std::string::npos) << link.error().message;
}

TEST(NativeSyncfsd, ReadOnlyUserGetsErofs) {
    if (::geteuid() != 0) GTEST_SKIP() << "uid = root in the module needs root";
    Mirror s;
    write_file(s.password_file, "bobpw\n", 0600);
    Daemon d(s.dir, s.config());
    ASSERT_GT(d.pid(), 0);
    auto link = MirrorLink::connect(fmt::format("rsync://bob@127.0.0.1:{}/web", d.port()), s.password_file, "bob-stream");
    ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << d.log();
    EXPECT_TRUE((*link)->hello().caps & pn::kCapReadOnly);
    ASSERT_TRUE((*link)->send(pn::Mkdir{1, "x", 0755, 0, 0}));
    std::vector<pn::Ack> errors;
    ASSERT_TRUE(barrier(**link, 1, &errors).has_value());
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].err, EROFS);
    EXPECT_FALSE(std::filesystem::exists(s.module + "/x"));
}

TEST(NativeSyncfsd, ChrootedModuleKeepsStateOutside) {
    if (::geteuid() != 0) GTEST_SKIP() << "chroot needs root";
    Mirror s;
    std::string cfg = s.config();
    cfg.replace(cfg.find("use chroot = no"), 15, "use chroot = yes");
    Daemon d(s.dir, cfg);
    ASSERT_GT(d.pid(), 0);
    auto link = MirrorLink::connect(fmt::format("rsync://alice@127.0.0.1:{}/web", d.port()), s.password_file, "chrooted");
    ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << d.log();
    ASSERT_TRUE((*link)->send(pn::Symlink{1, "abs", "/etc/passwd", 0, 0}));
    ASSERT_TRUE((*link)->send(pn::Create{2, "f", 0600, 0, 0}));
    // No /proc inside the chroot: chmod without following symlinks must still work.
    ASSERT_TRUE((*link)->send(pn::Mkdir{3, "d", 0750, 0, 0}));
    ASSERT_TRUE((*link)->send(pn::Setattr{4, "f", pn::kAttrMode, 0640, 0, 0, 0, {}, {}}));
    ASSERT_TRUE((*link)->send(pn::Setattr{5, "abs", pn::kAttrMode, 0600, 0, 0, 0, {}, {}}));  // a symlink: ignored
    ASSERT_TRUE((*link)->send(pn::Setxattr{6, "f", "user.k", "v"}));
    std::vector<pn::Ack> errors;
    auto done = barrier(**link, 1, &errors, true);
    ASSERT_TRUE(done.has_value()) << d.log();
    for (auto& e : errors) ADD_FAILURE() << e.message;
    EXPECT_EQ(std::filesystem::read_symlink(s.module + "/abs"), "/etc/passwd");  // chroot: not munged
    struct stat st{};
    ASSERT_EQ(::stat((s.module + "/d").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);
    ASSERT_EQ(::stat((s.module + "/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_TRUE(std::filesystem::exists(s.module + "/f"));
    EXPECT_TRUE(std::filesystem::exists(s.state + "/web/streams"));  // <state dir>/<module>
}

TEST(NativeSyncfsd, ModuleRunningAsNobodyKeepsItsState) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to nobody";
    Mirror s;
    ::chmod(s.module.c_str(), 0777);  // nobody writes the module
    std::string cfg = s.config();
    cfg.erase(cfg.find("uid = root\n"), 11);
    cfg.erase(cfg.find("gid = root\n"), 11);
    Daemon d(s.dir, cfg);
    ASSERT_GT(d.pid(), 0);
    auto url = fmt::format("rsync://alice@127.0.0.1:{}/web", d.port());
    auto link = MirrorLink::connect(url, s.password_file, "as-nobody");
    ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << d.log();
    ASSERT_TRUE((*link)->send(pn::Create{5, "f", 0644, 0, 0}));
    std::vector<pn::Ack> errors;
    auto done = barrier(**link, 1, &errors);
    ASSERT_TRUE(done.has_value()) << d.log();
    EXPECT_TRUE(errors.empty()) << errors.front().message;
    EXPECT_FALSE((*link)->hello().caps & pn::kCapOwner);
    link->reset();
    auto again = MirrorLink::connect(url, s.password_file, "as-nobody");
    ASSERT_TRUE(again.has_value()) << again.error().message;
    EXPECT_EQ((*again)->hello().applied_seq, 5u);
}

// A client that asks for a large reply and then reads nothing is dropped after the module's
// `timeout` (rsync's I/O timeout), freeing its stream for the next connection. The request:
// the signature of a 1 GiB sparse file in 64-byte blocks, ~200 MiB of replies.
TEST(NativeSyncfsd, ClientThatStopsReadingIsDroppedAfterTheModuleTimeout) {
    Mirror s;
    {
        UniqueFd f(::open((s.module + "/sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
        ASSERT_TRUE(f.valid());
        ASSERT_EQ(::ftruncate(f.get(), 1 << 30), 0);
    }
    // No auth users: this client speaks the protocol by hand.
    Daemon d(s.dir, fmt::format("use chroot = no\n[web]\npath = {}\nread only = no\ntimeout = 2\n"
                                "syncfs state dir = {}\n",
                                s.module, s.state));
    ASSERT_GT(d.pid(), 0) << d.log();
    int fd = connect_port(d.port());
    ASSERT_GE(fd, 0);
    int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ASSERT_TRUE(read_line(fd).has_value());  // greeting
    send_text(fd, "SYNCFS 2 web\n");
    ASSERT_EQ(read_line(fd).value_or(""), "@RSYNCD: OK");
    std::vector<std::uint8_t> out;
    ASSERT_TRUE(pn::encode(pn::Hello{.stream_id = "stalled:/src"}, out));
    ASSERT_TRUE(pn::encode(pn::SignatureRequest{1, "sparse", 64}, out));
    ASSERT_EQ(::write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(file_gets(s.dir / "syncfsd.log", "the client read nothing for 2 s", std::chrono::seconds(30)))
        << d.log();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
    ::close(fd);
    // The stream is free again at once.
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/web", d.port()), "", "stalled:/src");
    ASSERT_TRUE(link.has_value()) << link.error().message << "\n" << d.log();
}

// A second connection of a stream whose first connection still looks alive to syncfsd (here
// it is: the client just never closed it, as after a partition or a client crash) supersedes
// the first at once instead of waiting for keepalive or the idle timeout: the old session
// ends cleanly (its connection is shut down, the process exits rather than dying of a
// signal) and the new one resumes from the stream's position.
TEST(NativeSyncfsd, NewConnectionOfAStreamSupersedesAHalfOpenOne) {
    if (::geteuid() != 0) GTEST_SKIP() << "uid = root in the module needs root";
    Mirror s;
    Daemon d(s.dir, s.config());
    ASSERT_GT(d.pid(), 0) << d.log();
    const std::string url = fmt::format("rsync://alice@127.0.0.1:{}/web", d.port());
    auto old = MirrorLink::connect(url, s.password_file, "host-a:/data");
    ASSERT_TRUE(old.has_value()) << old.error().message << "\n" << d.log();
    ASSERT_TRUE((*old)->queue(pn::Mkdir{1, "before", 0755, 0, 0}));
    ASSERT_TRUE(barrier(**old, 1).has_value()) << d.log();

    // The new session waits at most 10 s for the stream's lock and is refused after that;
    // the old connection is idle, its keepalive would take minutes: only superseding the
    // old session lets this connect succeed.
    auto fresh = MirrorLink::connect(url, s.password_file, "host-a:/data");
    ASSERT_TRUE(fresh.has_value()) << fresh.error().message << "\n" << d.log();
    EXPECT_EQ((*fresh)->hello().applied_seq, 1u);
    ASSERT_TRUE((*fresh)->queue(pn::Mkdir{2, "after", 0755, 0, 0}));
    auto done = barrier(**fresh, 2);
    ASSERT_TRUE(done.has_value()) << d.log();
    EXPECT_EQ(done->applied_seq, 2u);
    EXPECT_TRUE(std::filesystem::is_directory(s.module + "/after"));

    // The old connection was shut down by the server.
    auto gone = (*old)->read_reply(std::chrono::seconds(10));
    EXPECT_FALSE(gone.has_value() && *gone) << "the superseded connection still delivers frames";
    EXPECT_TRUE(log_has(d, "supersedes it")) << d.log();
    EXPECT_TRUE(log_has(d, "ended by SIGTERM")) << d.log();
    EXPECT_EQ(d.log().find("killed by signal"), std::string::npos) << d.log();
}

// The stream state must be out of clients' reach (an rsync client with write access could
// otherwise rewrite the holder pid a superseding session signals): a state dir inside the
// module path refuses native connections with a message that says what to change, while
// rsync clients of the same module are unaffected.
TEST(NativeSyncfsd, StateDirInsideTheModuleIsRefused) {
    Mirror s;
    Daemon d(s.dir, fmt::format("use chroot = no\nuid = root\ngid = root\n[web]\npath = {}\nread only = no\n"
                                "syncfs state dir = {}/./.syncfs\n",
                                s.module, s.module));
    ASSERT_GT(d.pid(), 0) << d.log();
    auto link = MirrorLink::connect(fmt::format("rsync://127.0.0.1:{}/web", d.port()), "", "inside");
    ASSERT_FALSE(link.has_value());
    EXPECT_NE(link.error().message.find("cannot keep replication state"), std::string::npos) << link.error().message;
    EXPECT_TRUE(log_has(d, "is inside the module path")) << d.log();
    EXPECT_FALSE(std::filesystem::exists(s.module + "/.syncfs"));
    auto pull = run("rsync -r " + d.url("web/") + " " + (s.dir / "out/"));
    EXPECT_EQ(pull.status, 0) << pull.output;
}

}  // namespace
}  // namespace sfs::test
