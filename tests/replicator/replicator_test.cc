// The replicator against the real mirror-side applier (server/native) over socketpairs:
// change records are produced by applying each op to a real SOURCE directory, the way the
// fs emits them; the mirror is a real directory; convergence is judged by the real rsync
// (`rsync -aHAXnc --delete -i SRC/ MIRROR/` prints nothing). The FUSE mount and syncfsd
// daemon are exercised by the e2e_* tests.
#include "replicator/replicator.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/replicator/loopback_connection.h"

namespace sfs::repl {
namespace {

namespace stdfs = std::filesystem;
using namespace std::chrono_literals;
using K = fs::ChangeKind;

std::string run(const std::string& cmd) {
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return "popen failed";
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int rc = ::pclose(p);
    if (rc != 0) out += "\n[exit " + std::to_string(rc) + "]";
    return out;
}

struct Dirs {
    std::string root, src, mirror, state, server_state;
    Dirs() {
        char tmpl[] = "/tmp/repl_test.XXXXXX";
        root = ::mkdtemp(tmpl);
        src = root + "/src";
        mirror = root + "/mirror";
        state = root + "/state";
        server_state = root + "/server-state";
        for (auto& d : {src, mirror, state, server_state}) stdfs::create_directories(d);
    }
    ~Dirs() { stdfs::remove_all(root); }
};

// Applies ops to SOURCE and reports them to the sink exactly as fs/ would.
class SourceOps {
public:
    SourceOps(const std::string& src, fs::ChangeSink& sink) : src_(src), sink_(sink) {}

    std::uint64_t ino(const std::string& p) {
        struct stat st;
        EXPECT_EQ(::lstat(full(p).c_str(), &st), 0) << p;
        return st.st_ino;
    }
    std::string full(const std::string& p) const { return p.empty() ? src_ : src_ + "/" + p; }

    void mkdir(const std::string& p, mode_t mode = 0755) {
        ASSERT_EQ(::mkdir(full(p).c_str(), mode), 0) << p;
        emit(K::Mkdir, p, {}, [&](fs::ChangeRecord& r) { r.mode = S_IFDIR | mode; });
    }
    void create(const std::string& p, mode_t mode = 0644) {
        int fd = ::open(full(p).c_str(), O_CREAT | O_EXCL | O_WRONLY, mode);
        ASSERT_GE(fd, 0) << p;
        ::close(fd);
        emit(K::Create, p, {}, [&](fs::ChangeRecord& r) { r.mode = S_IFREG | mode; });
    }
    void write(const std::string& p, std::uint64_t off, const std::string& data) {
        int fd = ::open(full(p).c_str(), O_WRONLY);
        ASSERT_GE(fd, 0) << p;
        ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(off)), static_cast<ssize_t>(data.size()));
        ::close(fd);
        emit(K::Write, p, {}, [&](fs::ChangeRecord& r) {
            r.offset = off;
            r.length = data.size();
        });
    }
    void put(const std::string& p, const std::string& data) {
        create(p);
        if (!data.empty()) write(p, 0, data);
    }
    void truncate(const std::string& p, std::uint64_t size) {
        ASSERT_EQ(::truncate(full(p).c_str(), static_cast<off_t>(size)), 0);
        emit(K::Setattr, p, {}, [&](fs::ChangeRecord& r) {
            r.attr_mask = fs::kAttrSize;
            r.size = size;
        });
    }
    void chmod(const std::string& p, mode_t mode) {
        ASSERT_EQ(::chmod(full(p).c_str(), mode), 0);
        emit(K::Setattr, p, {}, [&](fs::ChangeRecord& r) {
            r.attr_mask = fs::kAttrMode;
            r.mode = mode;
        });
    }
    void utimes(const std::string& p, time_t mtime) {
        timespec t[2] = {{mtime, 0}, {mtime, 123456789}};
        ASSERT_EQ(::utimensat(AT_FDCWD, full(p).c_str(), t, AT_SYMLINK_NOFOLLOW), 0);
        emit(K::Setattr, p, {}, [&](fs::ChangeRecord& r) {
            r.attr_mask = fs::kAttrAtime | fs::kAttrMtime;
            r.atime = t[0];
            r.mtime = t[1];
        });
    }
    void symlink(const std::string& target, const std::string& p) {
        ASSERT_EQ(::symlink(target.c_str(), full(p).c_str()), 0);
        emit(K::Symlink, p, {}, [&](fs::ChangeRecord& r) { r.target = target; });
    }
    void link(const std::string& existing, const std::string& p) {
        ASSERT_EQ(::link(full(existing).c_str(), full(p).c_str()), 0);
        emit(K::Link, p, existing, nullptr);
    }
    void rename(const std::string& from, const std::string& to) {
        const std::uint64_t i = ino(from);
        ASSERT_EQ(::rename(full(from).c_str(), full(to).c_str()), 0);
        fs::ChangeRecord r;
        r.kind = K::Rename;
        r.ino = i;
        r.path = from;
        r.path2 = to;
        sink_.on_change(r);
    }
    void unlink(const std::string& p) {
        struct stat st;
        ASSERT_EQ(::lstat(full(p).c_str(), &st), 0);
        ASSERT_EQ(::unlink(full(p).c_str()), 0);
        fs::ChangeRecord r;
        r.kind = K::Unlink;
        r.ino = st.st_ino;
        r.path = p;
        r.nlink = st.st_nlink - 1;
        sink_.on_change(r);
    }
    void rmdir(const std::string& p) {
        const std::uint64_t i = ino(p);
        ASSERT_EQ(::rmdir(full(p).c_str()), 0);
        fs::ChangeRecord r;
        r.kind = K::Rmdir;
        r.ino = i;
        r.path = p;
        sink_.on_change(r);
    }
    void setxattr(const std::string& p, const std::string& name, const std::string& value) {
        ASSERT_EQ(::lsetxattr(full(p).c_str(), name.c_str(), value.data(), value.size(), 0), 0);
        emit(K::Setxattr, p, {}, [&](fs::ChangeRecord& r) {
            r.xattr_name = name;
            r.xattr_value = value;
        });
    }

private:
    template <class F>
    void emit(K kind, const std::string& p, const std::string& p2, F&& fill) {
        struct stat st;
        ASSERT_EQ(::lstat(full(p).c_str(), &st), 0) << p;
        fs::ChangeRecord r;
        r.kind = kind;
        r.ino = st.st_ino;
        r.path = p;
        r.path2 = p2;
        r.mode = st.st_mode;
        r.uid = st.st_uid;
        r.gid = st.st_gid;
        if constexpr (!std::is_same_v<std::decay_t<F>, std::nullptr_t>) fill(r);
        sink_.on_change(r);
    }
    std::string src_;
    fs::ChangeSink& sink_;
};

struct Harness {
    Dirs dirs;
    UniqueFd src_fd;
    server::NativeModule module;
    std::atomic<long> cut_after{-1};     // each new connection is cut after this many sends
    std::atomic<int> connections{0};
    std::unique_ptr<Replicator> rep;

    Harness() {
        src_fd.reset(::open(dirs.src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        module.name = "test";
        module.path = dirs.mirror;
        module.state_dir = dirs.server_state;
        module.am_root = ::geteuid() == 0;
        module.peer = "loopback";
    }
    ~Harness() {
        if (rep) rep->stop(false);
    }
    ReplicatorOptions options() {
        ReplicatorOptions o;
        o.mirrors = {"rsync://127.0.0.1:1/test"};
        o.source = dirs.src;
        o.state_dir = dirs.state;
        o.stop_grace = 2000ms;
        o.connector = [this](const std::string&, const std::string&, const std::string& stream) {
            ++connections;
            return testing::LoopbackConnection::open(module, stream, cut_after.load());
        };
        return o;
    }
    void start(ReplicatorOptions o) {
        auto r = Replicator::create(std::move(o), src_fd.get());
        ASSERT_TRUE(r) << r.error().message;
        rep = std::move(*r);
        ASSERT_TRUE(rep->start());
    }
    void start() { start(options()); }
    std::string diff() { return run("rsync -aHAXnc --delete -i " + dirs.src + "/ " + dirs.mirror + "/ 2>&1"); }
    std::string status_field(const std::string& key) {
        for (auto& [k, v] : rep->status()) {
            if (k == key) return v;
        }
        return {};
    }
    std::uint64_t bytes_sent() {
        for (auto& [k, v] : rep->status()) {
            if (k == "mirror.0.bytes_sent") return std::stoull(v);
        }
        return 0;
    }
};

TEST(Replicator, ExistingTreeAndEveryKindOfChangeConverge) {
    Harness h;
    // Before the mount: the initial reconcile must copy this.
    stdfs::create_directories(h.dirs.src + "/pre/sub");
    std::ofstream(h.dirs.src + "/pre/a.txt") << "hello";
    std::ofstream(h.dirs.src + "/pre/sub/big.bin") << std::string(300000, 'x');
    stdfs::create_directories(h.dirs.mirror + "/stale/dir");
    std::ofstream(h.dirs.mirror + "/stale/dir/junk") << "delete me";
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.mkdir("d");
    ops.put("d/f1", "one");
    ops.put("d/f2", std::string(3 << 20, 'z'));  // several WriteRange chunks
    ops.write("d/f2", 1000, "patched");
    ops.mkdir("d/e");
    ops.put("d/e/g", "g");
    ops.rename("d/e", "d/e2");                  // directory rename
    ops.write("d/e2/g", 1, "more");             // write after the rename: current path
    ops.symlink("../pre/a.txt", "d/link");
    ops.link("d/f1", "d/hard");
    ops.chmod("d/f1", 0600);
    ops.truncate("d/f2", 5000);
    ops.setxattr("d/f1", "user.k", "v\x01\x02");
    ops.utimes("d/f1", 1600000000);
    ops.put("d/doomed", "x");
    ops.unlink("d/doomed");
    ops.mkdir("d/gone");
    ops.rmdir("d/gone");
    ops.put("tmp", "new content");
    ops.rename("tmp", "pre/a.txt");             // rename over an existing file
    EXPECT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
}

// Directory (and new node) times are set from SOURCE once the sender has caught up with the
// journal, but SOURCE may be ahead of it (records not durable yet, or made a moment after
// their syscall). Here a batch of records is held back by delay= while SOURCE moves on
// without records (they are made later): "a" is renamed away and "y", deleted in the
// batch, exists again. The times must follow the journal: no utimes of "y" (the mirror has
// none at that point: that failed there), and "a"'s pending time goes with it to "b".
TEST(Replicator, DirectoryTimesFollowTheJournalWhenSourceIsAhead) {
    Harness h;
    ReplicatorOptions o = h.options();
    o.delay = 300ms;
    h.start(std::move(o));
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.mkdir("a");
    ops.put("a/f", "f");
    ASSERT_EQ(h.rep->wait(30s), "");
    ops.create("a/g");    // "a" and "a/g" are dirty (no data: nothing is read from SOURCE)
    ops.put("y", "2");    // "y" is dirty ...
    ops.unlink("y");      // ... and gone on the mirror after this batch
    const std::string src = h.dirs.src;
    const std::uint64_t a_ino = ops.ino("a");
    ASSERT_EQ(::rename((src + "/a").c_str(), (src + "/b").c_str()), 0);
    const int fd = ::open((src + "/y").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ::close(fd);
    std::this_thread::sleep_for(900ms);  // the batch is sent and the times flushed meanwhile
    fs::ChangeRecord rename;
    rename.kind = K::Rename;
    rename.ino = a_ino;
    rename.path = "a";
    rename.path2 = "b";
    h.rep->sink().on_change(rename);
    struct stat st;
    ASSERT_EQ(::lstat((src + "/y").c_str(), &st), 0);
    fs::ChangeRecord create;
    create.kind = K::Create;
    create.ino = st.st_ino;
    create.path = "y";
    create.mode = st.st_mode;
    h.rep->sink().on_change(create);
    ASSERT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.status_field("mirror.0.errors"), "0") << h.status_field("mirror.0.last_error");
    EXPECT_EQ(h.diff(), "");
}

TEST(Replicator, DirectoryRenameOfAThousandFilesSendsNoData) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.mkdir("big");
    for (int i = 0; i < 1000; ++i) ops.put("big/f" + std::to_string(i), std::string(4096, static_cast<char>('a' + i % 26)));
    ASSERT_EQ(h.rep->wait(60s), "");
    const std::uint64_t before = h.bytes_sent();
    ops.rename("big", "moved");
    ASSERT_EQ(h.rep->wait(30s), "");
    const std::uint64_t sent = h.bytes_sent() - before;
    EXPECT_LT(sent, 64u * 1024) << sent << " bytes sent for a directory rename";
    EXPECT_EQ(h.diff(), "");
}

TEST(Replicator, SmallWriteIntoAHugeFileSendsOnlyThatRange) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.create("huge");
    ops.truncate("huge", 1ull << 30);  // sparse 1 GiB on both sides, no data on the wire
    ASSERT_EQ(h.rep->wait(60s), "");
    const std::uint64_t before = h.bytes_sent();
    ops.write("huge", 512ull << 20, std::string(4096, 'Q'));
    ASSERT_EQ(h.rep->wait(30s), "");
    const std::uint64_t sent = h.bytes_sent() - before;
    EXPECT_LT(sent, 64u * 1024) << sent << " bytes sent for a 4 KiB write";
    EXPECT_EQ(run("cmp " + h.dirs.src + "/huge " + h.dirs.mirror + "/huge 2>&1"), "");
}

TEST(Replicator, ConvergesThroughRepeatedNetworkCuts) {
    Harness h;
    h.cut_after = 37;  // every connection dies after 37 frames
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    std::mt19937 rng(42);
    ops.mkdir("w");
    for (int i = 0; i < 200; ++i) {
        const std::string name = "w/f" + std::to_string(rng() % 40);
        if (!stdfs::exists(ops.full(name))) {
            ops.put(name, std::string(rng() % 5000, static_cast<char>('a' + rng() % 26)));
        } else {
            switch (rng() % 4) {
                case 0: ops.write(name, rng() % 8000, std::string(rng() % 3000 + 1, 'W')); break;
                case 1: ops.unlink(name); break;
                case 2: ops.rename(name, "w/r" + std::to_string(i)); break;
                default: ops.truncate(name, rng() % 4000); break;
            }
        }
    }
    std::this_thread::sleep_for(300ms);
    h.cut_after = -1;  // the network heals
    EXPECT_EQ(h.rep->wait(60s), "");
    EXPECT_EQ(h.diff(), "");
    EXPECT_GT(h.connections.load(), 2);
}

TEST(Replicator, UncleanStopThenRestartLosesNothing) {
    Harness h;
    h.cut_after = 0;  // mirror unreachable: everything stays in the journal
    h.start();
    {
        SourceOps ops(h.dirs.src, h.rep->sink());
        ops.mkdir("a");
        for (int i = 0; i < 50; ++i) ops.put("a/f" + std::to_string(i), "data" + std::to_string(i));
        ops.rename("a/f1", "a/renamed");
        EXPECT_NE(h.rep->wait(500ms), "");  // not reachable: wait times out with a reason
    }
    h.rep->stop(false);  // like kill -9: no clean marker
    h.rep.reset();
    EXPECT_FALSE(stdfs::exists(h.dirs.state + "/clean"));
    h.cut_after = -1;
    h.start();
    EXPECT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
    h.rep->stop(true);
    h.rep.reset();
    EXPECT_TRUE(stdfs::exists(h.dirs.state + "/clean"));
}

TEST(Replicator, OutsideChangeIsReconciledWithADelta) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.put("f", std::string(1 << 20, 'a'));
    ASSERT_EQ(h.rep->wait(30s), "");
    // Written behind the mount's back (no change record), as the watcher would report it.
    {
        std::fstream f(h.dirs.src + "/f", std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(300000);
        f << "outside";
    }
    const std::uint64_t before = h.bytes_sent();
    h.rep->note_outside_change("f");
    ASSERT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
    EXPECT_LT(h.bytes_sent() - before, 200u * 1024);  // a delta, not the whole MiB
}

// Outside changes (docs/watcher.md): Verify records for a new file in directories the
// mirror lacks, a removed subtree and a plain file; no op may fail on the mirror (a failed
// op would fall back to a whole-tree checksum reconcile).
TEST(Replicator, OutsideVerifyRecordsCreateDeleteAndFillMissingDirectories) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.put("keep", "k");
    ops.mkdir("d");
    ops.put("d/x", "x");
    ops.mkdir("d/sub");
    ops.put("d/sub/y", "y");
    ASSERT_EQ(h.rep->wait(30s), "");
    const std::string errors_before = h.status_field("mirror.0.errors");
    stdfs::create_directories(h.dirs.src + "/new/a/b");
    { std::ofstream(h.dirs.src + "/new/a/b/f") << "deep"; }
    { std::ofstream(h.dirs.src + "/new/side") << "side"; }
    stdfs::remove_all(h.dirs.src + "/d");
    { std::ofstream(h.dirs.src + "/plain") << "plain"; }
    h.rep->note_outside_change("new/a/b/f");   // the mirror lacks new/: sent from there, whole
    h.rep->note_outside_change("d", true);     // gone: deleted with its subtree
    h.rep->note_outside_change("plain");
    h.rep->note_outside_change("d/sub/y");     // gone too (covered by "d")
    ASSERT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
    for (auto& [k, v] : h.rep->status()) {
        if (k == "mirror.0.errors") {
            EXPECT_EQ(v, errors_before);  // no op failed (that would mean a checksum reconcile)
        }
        if (k == "mirror.0.outside_verified") {
            EXPECT_NE(v, "0");
        }
    }
}

// An outside rename (Rename record with kRenameFromOutside) is sent as one rename when the
// mirror has the source, and as content when it does not.
TEST(Replicator, OutsideRenameIsSentAsARenameOrAsContent) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.mkdir("a");
    ops.mkdir("a/dir");
    for (int i = 0; i < 200; ++i) ops.put("a/dir/f" + std::to_string(i), std::string(1000, static_cast<char>('a' + i % 26)));
    ops.mkdir("b");
    ASSERT_EQ(h.rep->wait(30s), "");
    const std::string errors_before = h.status_field("mirror.0.errors");
    auto outside_rename = [&](const std::string& from, const std::string& to) {
        ASSERT_EQ(::rename((h.dirs.src + "/" + from).c_str(), (h.dirs.src + "/" + to).c_str()), 0);
        fs::ChangeRecord r;
        r.kind = K::Rename;
        r.path = from;
        r.path2 = to;
        r.flags = fs::kRenameFromOutside;
        h.rep->sink().on_change(r);
    };
    std::uint64_t before = h.bytes_sent();
    outside_rename("a/dir", "b/moved");
    ASSERT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
    EXPECT_LT(h.bytes_sent() - before, 16u * 1024);  // 200 KB of files stay where they are
    // The mirror never saw "c" (made outside, no record): the rename becomes content.
    { std::ofstream(h.dirs.src + "/c") << "never on the mirror"; }
    outside_rename("c", "b/e");
    // Atomic replace of an existing file.
    { std::ofstream(h.dirs.src + "/b/.tmp") << "replacement"; }
    h.rep->note_outside_change("b/.tmp");
    outside_rename("b/.tmp", "b/moved/f1");
    ASSERT_EQ(h.rep->wait(30s), "");
    EXPECT_EQ(h.diff(), "");
    for (auto& [k, v] : h.rep->status()) {
        if (k == "mirror.0.errors") {
            EXPECT_EQ(v, errors_before);  // no op failed (that would mean a checksum reconcile)
        }
        if (k == "mirror.0.outside_renames") {
            EXPECT_NE(v, "0");
        }
    }
}

TEST(Replicator, StatusAndWaitOverTheControlSocket) {
    Harness h;
    h.start();
    SourceOps ops(h.dirs.src, h.rep->sink());
    ops.put("x", "y");
    const std::string ctl = SYNCFSCTL " --state " + h.dirs.state;
    EXPECT_EQ(run(ctl + " wait --timeout 30"), "");
    const std::string json = run(ctl + " status --json");
    EXPECT_NE(json.find("\"connected\": true"), std::string::npos) << json;
    EXPECT_NE(json.find("\"backlog_ops\": 0"), std::string::npos) << json;
    const std::string text = run(ctl + " status");
    EXPECT_NE(text.find("rsync://127.0.0.1:1/test"), std::string::npos) << text;
    EXPECT_EQ(run(ctl + " resync"), "resync started for " + h.dirs.state + "/control.sock (see syncfsctl status)\n");
    EXPECT_EQ(run(ctl + " wait --timeout 30"), "");
    EXPECT_EQ(h.diff(), "");
    // Not reachable -> exit 2 with a message naming the socket.
    EXPECT_NE(run(SYNCFSCTL " --socket /nonexistent.sock status 2>&1").find("/nonexistent.sock"), std::string::npos);
}

}  // namespace
}  // namespace sfs::repl
