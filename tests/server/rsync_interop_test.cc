// The rsync transfer (server/rsync) against the real rsync 3.5.0 client through the real
// syncfsd binary on a random loopback port: the seed's exact commands, attribute
// preservation, --delete, -c, --inplace, --partial, -n, --stats/-v, -z, -H, delta
// efficiency on a 1 GiB file, forced protocol versions, unsupported options and hostile
// paths. Trees are compared with diff -r and lstat.
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <regex>

#include "daemon_harness.h"
#include "tests/support/eventually.h"

namespace sfs::test {
namespace {

namespace fs = std::filesystem;

std::string conf_for(const TempDir& dir, const std::string& extra_module = "") {
    return "use chroot = no\nuid = root\ngid = root\n"
           "[web]\npath = " + (dir / "web") + "\nread only = no\nmunge symlinks = no\n" + extra_module;
}

struct Node {
    mode_t mode;
    uid_t uid;
    gid_t gid;
    time_t mtime;
    off_t size;
    dev_t rdev;
    std::string target;
    ino_t ino;
};

std::map<std::string, Node> scan(const std::string& root) {
    std::map<std::string, Node> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
        std::string rel = fs::relative(it->path(), root).string();
        struct stat st {};
        ::lstat(it->path().c_str(), &st);
        Node n{st.st_mode, st.st_uid, st.st_gid, st.st_mtime, S_ISDIR(st.st_mode) ? 0 : st.st_size, st.st_rdev, {}, st.st_ino};
        if (S_ISLNK(st.st_mode)) n.target = fs::read_symlink(it->path()).string();
        out[rel] = n;
    }
    return out;
}

// Same names, types, modes, owners, mtimes (dirs and files), sizes, symlink targets, rdevs.
void expect_same_tree(const std::string& a, const std::string& b, bool owners = true, bool dir_times = true) {
    // diff cannot compare fifos/devices; those are checked through lstat below.
    auto d = run("diff -r --no-dereference -x fifo -x null " + a + " " + b);
    EXPECT_EQ(d.status, 0) << d.output;
    auto ta = scan(a), tb = scan(b);
    ASSERT_EQ(ta.size(), tb.size());
    for (const auto& [name, na] : ta) {
        auto it = tb.find(name);
        ASSERT_NE(it, tb.end()) << name;
        const Node& nb = it->second;
        EXPECT_EQ(na.mode, nb.mode) << name;
        if (owners) {
            EXPECT_EQ(na.uid, nb.uid) << name;
            EXPECT_EQ(na.gid, nb.gid) << name;
        }
        if (!S_ISLNK(na.mode) && (dir_times || !S_ISDIR(na.mode))) {
            EXPECT_EQ(na.mtime, nb.mtime) << name;
        }
        EXPECT_EQ(na.size, nb.size) << name;
        EXPECT_EQ(na.target, nb.target) << name;
        if (S_ISCHR(na.mode) || S_ISBLK(na.mode)) {
            EXPECT_EQ(na.rdev, nb.rdev) << name;
        }
    }
}

std::int64_t stat_number(const std::string& out, const std::string& label) {
    std::regex re(label + ": ([0-9,]+)");
    std::smatch m;
    if (!std::regex_search(out, m, re)) return -1;
    std::string digits;
    for (char c : m[1].str())
        if (c != ',') digits += c;
    return std::stoll(digits);
}

void make_tree(const TempDir& dir, const std::string& root) {
    fs::create_directories(root + "/sub/deeper");
    write_file(root + "/a.txt", "hello\n", 0644);
    write_file(root + "/exec.sh", "#!/bin/sh\necho hi\n", 0755);
    write_file(root + "/sub/private", "secret\n", 0600);
    write_file(root + "/sub/deeper/empty", "", 0640);
    std::string big;
    for (int i = 0; i < 20000; ++i) big += "line " + std::to_string(i * 7919 % 100003) + "\n";
    write_file(root + "/sub/big.txt", big, 0644);
    fs::create_symlink("a.txt", root + "/link");
    fs::create_symlink("/nonexistent/abs", root + "/sub/dangling");
    ::chown((root + "/sub/private").c_str(), 1234, 5678);   // ids without names: numeric
    ::chown((root + "/a.txt").c_str(), 0, 5678);
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
    ::utimensat(AT_FDCWD, (root + "/a.txt").c_str(), ts, AT_SYMLINK_NOFOLLOW);
    ::utimensat(AT_FDCWD, (root + "/sub/deeper").c_str(), ts, 0);
    (void)dir;
}

void set_mtime(const std::string& path, time_t t) {
    struct timespec ts[2] = {{0, UTIME_OMIT}, {t, 0}};
    ::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}

class RsyncInterop : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(dir / "web");
        fs::create_directories(dir / "src");
        daemon.emplace(dir, conf_for(dir));
        ASSERT_GT(daemon->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    }
    std::string url(const std::string& rest = "") { return daemon->url(rest); }
    std::string hostmod(const std::string& rest = "") {
        return "--port=" + std::to_string(daemon->port()) + " 127.0.0.1::" + rest;
    }

    TempDir dir;
    std::optional<Daemon> daemon;
};

TEST_F(RsyncInterop, SeedPushCommandWithDeleteAndCompression) {
    make_tree(dir, dir / "src");
    write_file(dir / "web/stale", "old\n");
    fs::create_directories(dir / "web/olddir/x");
    auto r = run("rsync -azrtopg --delete " + (dir / "src/") + " " + url("web"));
    ASSERT_EQ(r.status, 0) << r.output;
    expect_same_tree(dir / "src", dir / "web");
    EXPECT_FALSE(fs::exists(dir / "web/stale"));
    EXPECT_FALSE(fs::exists(dir / "web/olddir"));
}

TEST_F(RsyncInterop, SeedPullCommands) {
    make_tree(dir, dir / "web");
    auto r = run("rsync -aprtogzl " + hostmod("web/") + " " + (dir / "dst1"));
    ASSERT_EQ(r.status, 0) << r.output;
    expect_same_tree(dir / "web", dir / "dst1");
    auto r2 = run("rsync -arogtpz " + url("web/") + " " + (dir / "dst2"));
    ASSERT_EQ(r2.status, 0) << r2.output;
    expect_same_tree(dir / "web", dir / "dst2");
}

TEST_F(RsyncInterop, SeedSingleFileAndEtcCommands) {
    auto r = run("rsync /etc/fstab " + hostmod("web"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "web/fstab"), read_file("/etc/fstab"));
    auto e = run("rsync -a /etc " + url("web"));
    ASSERT_EQ(e.status, 0) << e.output;
    auto d = run("diff -r --no-dereference /etc " + (dir / "web/etc"));
    EXPECT_EQ(d.status, 0) << d.output;
    // A single file to a new name (get_local_name).
    write_file(dir / "one", "1\n");
    auto n = run("rsync " + (dir / "one") + " " + url("web/renamed"));
    ASSERT_EQ(n.status, 0) << n.output;
    EXPECT_EQ(read_file(dir / "web/renamed"), "1\n");
}

TEST_F(RsyncInterop, ListsInsideTheModule) {
    make_tree(dir, dir / "web");
    auto r = run("rsync " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("a.txt"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("sub"), std::string::npos);
    auto s = run("rsync " + url("web/sub/"));
    EXPECT_NE(s.output.find("big.txt"), std::string::npos) << s.output;
}

TEST_F(RsyncInterop, PreservesHardLinksDevicesAndOwners) {
    make_tree(dir, dir / "src");
    write_file(dir / "src/h1", "hard\n");
    ASSERT_EQ(::link((dir / "src/h1").c_str(), (dir / "src/sub/h2").c_str()), 0);
    ASSERT_EQ(::mkfifo((dir / "src/fifo").c_str(), 0640), 0);
    ASSERT_EQ(::mknod((dir / "src/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    auto r = run("rsync -aH " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    expect_same_tree(dir / "src", dir / "web");
    struct stat a {}, b {};
    ::stat((dir / "web/h1").c_str(), &a);
    ::stat((dir / "web/sub/h2").c_str(), &b);
    EXPECT_EQ(a.st_ino, b.st_ino);
    // And back out: pull with -H keeps the link too.
    auto p = run("rsync -aH " + url("web/") + " " + (dir / "back/"));
    ASSERT_EQ(p.status, 0) << p.output;
    expect_same_tree(dir / "src", dir / "back");
    ::stat((dir / "back/h1").c_str(), &a);
    ::stat((dir / "back/sub/h2").c_str(), &b);
    EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST_F(RsyncInterop, NumericIdsAndNameMapping) {
    make_tree(dir, dir / "src");
    auto r = run("rsync -a --numeric-ids " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    expect_same_tree(dir / "src", dir / "web");
    auto p = run("rsync -a " + url("web/") + " " + (dir / "back/"));
    ASSERT_EQ(p.status, 0) << p.output;
    expect_same_tree(dir / "src", dir / "back");
}

TEST_F(RsyncInterop, DeleteStaysInTransferredDirsAndHonoursExcludes) {
    make_tree(dir, dir / "src");
    fs::create_directories(dir / "web/sub");
    write_file(dir / "web/sub/gone", "x");
    write_file(dir / "web/keep.log", "x");
    write_file(dir / "web/outside-of-transfer", "x");
    // Only sub/ is transferred: nothing outside web/sub may be deleted.
    auto r = run("rsync -a --delete " + (dir / "src/sub/") + " " + url("web/sub/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_FALSE(fs::exists(dir / "web/sub/gone"));
    EXPECT_TRUE(fs::exists(dir / "web/outside-of-transfer"));
    auto e = run("rsync -a --delete --exclude='*.log' " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(e.status, 0) << e.output;
    EXPECT_TRUE(fs::exists(dir / "web/keep.log"));
    EXPECT_FALSE(fs::exists(dir / "web/outside-of-transfer"));
    // -n: nothing deleted, the deletion is reported.
    write_file(dir / "web/dry", "x");
    auto n = run("rsync -av -n --delete " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(n.status, 0) << n.output;
    EXPECT_TRUE(fs::exists(dir / "web/dry"));
    EXPECT_NE(n.output.find("deleting dry"), std::string::npos) << n.output;
}

TEST_F(RsyncInterop, ChecksumModeFindsSameSizeSameTimeChanges) {
    write_file(dir / "src/f", "aaaa\n");
    auto r = run("rsync -a " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    write_file(dir / "src/f", "bbbb\n");
    struct timespec ts[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
    ::utimensat(AT_FDCWD, (dir / "src/f").c_str(), ts, 0);
    ::utimensat(AT_FDCWD, (dir / "web/f").c_str(), ts, 0);
    run("rsync -a " + (dir / "src/") + " " + url("web/"));
    EXPECT_EQ(read_file(dir / "web/f"), "aaaa\n");   // quick check: same size and time
    auto c = run("rsync -ac " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(c.status, 0) << c.output;
    EXPECT_EQ(read_file(dir / "web/f"), "bbbb\n");
    // Pull with -c.
    write_file(dir / "web/f", "cccc\n");
    ::utimensat(AT_FDCWD, (dir / "web/f").c_str(), ts, 0);
    auto p = run("rsync -ac " + url("web/") + " " + (dir / "src/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(read_file(dir / "src/f"), "cccc\n");
}

TEST_F(RsyncInterop, InplaceKeepsTheInodeAndDryRunChangesNothing) {
    std::string text(200000, 'x');
    write_file(dir / "src/f", text);
    ASSERT_EQ(run("rsync -a " + (dir / "src/") + " " + url("web/")).status, 0);
    struct stat before {}, after {};
    ::stat((dir / "web/f").c_str(), &before);
    text[100000] = 'y';
    text += "tail";
    write_file(dir / "src/f", text);
    set_mtime(dir / "src/f", 1600000001);
    auto n = run("rsync -av -n " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(n.status, 0) << n.output;
    EXPECT_NE(n.output.find("f\n"), std::string::npos) << n.output;
    EXPECT_TRUE(read_file(dir / "web/f") != text);
    auto r = run("rsync -a --inplace " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    ::stat((dir / "web/f").c_str(), &after);
    EXPECT_EQ(before.st_ino, after.st_ino);
    EXPECT_TRUE(read_file(dir / "web/f") == text);
    // Without --inplace the file is replaced through a temp name (new inode).
    text[5] = 'z';
    write_file(dir / "src/f", text);
    set_mtime(dir / "src/f", 1600000002);
    ASSERT_EQ(run("rsync -a " + (dir / "src/") + " " + url("web/")).status, 0);
    ::stat((dir / "web/f").c_str(), &before);
    EXPECT_NE(before.st_ino, after.st_ino);
    EXPECT_TRUE(read_file(dir / "web/f") == text);
    // Pull --inplace.
    text[7] = 'q';
    write_file(dir / "web/f", text);
    set_mtime(dir / "web/f", 1600000003);
    ::stat((dir / "src/f").c_str(), &before);
    auto p = run("rsync -a --inplace " + url("web/") + " " + (dir / "src/"));
    ASSERT_EQ(p.status, 0) << p.output;
    ::stat((dir / "src/f").c_str(), &after);
    EXPECT_EQ(before.st_ino, after.st_ino);
    EXPECT_TRUE(read_file(dir / "src/f") == text);
}

TEST_F(RsyncInterop, PartialKeepsAnInterruptedFile) {
    // 8 MiB at 1 MiB/s: interrupt after ~2 s. With --partial the daemon keeps what arrived.
    auto g = run("head -c 8388608 /dev/urandom > " + (dir / "src.bin"));
    ASSERT_EQ(g.status, 0);
    auto r = run("timeout -s INT 2 rsync --partial --bwlimit=1024 " + (dir / "src.bin") + " " + url("web/"));
    EXPECT_NE(r.status, 0);
    testsupport::eventually([&] { return fs::exists(dir / "web/src.bin"); });
    ASSERT_TRUE(fs::exists(dir / "web/src.bin"));
    auto size = fs::file_size(dir / "web/src.bin");
    EXPECT_GT(size, 0u);
    EXPECT_LT(size, 8388608u);
    // Without --partial nothing is left behind, not even the temp file.
    auto r2 = run("timeout -s INT 2 rsync --bwlimit=1024 " + (dir / "src.bin") + " " + url("web/other.bin"));
    EXPECT_NE(r2.status, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_FALSE(fs::exists(dir / "web/other.bin"));
    for (const auto& e : fs::directory_iterator(dir / "web"))
        EXPECT_EQ(e.path().filename().string().find(".other.bin."), std::string::npos) << e.path();
}

TEST_F(RsyncInterop, StatsAndVerboseReportRealNumbers) {
    make_tree(dir, dir / "web");
    auto p = run("rsync -av --stats " + url("web/") + " " + (dir / "dst/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_NE(p.output.find("sub/big.txt"), std::string::npos) << p.output;
    EXPECT_EQ(stat_number(p.output, "Number of regular files transferred"), 5);
    auto total = stat_number(p.output, "Total file size");
    EXPECT_GT(total, 100000);
    auto received = stat_number(p.output, "Total bytes received");
    EXPECT_GT(received, total);
    auto sent = stat_number(p.output, "Total bytes sent");
    EXPECT_GT(sent, 0);
    EXPECT_LT(sent, 2000);
    // Nothing changed: a second pull transfers no file.
    auto again = run("rsync -a --stats " + url("web/") + " " + (dir / "dst/"));
    EXPECT_EQ(stat_number(again.output, "Number of regular files transferred"), 0) << again.output;
}

TEST_F(RsyncInterop, CompressedDeltaBothWays) {
    std::string text;
    for (int i = 0; i < 50000; ++i) text += "row " + std::to_string(i) + " some compressible text\n";
    write_file(dir / "src/f", text);
    ASSERT_EQ(run("rsync -az " + (dir / "src/") + " " + url("web/")).status, 0);
    EXPECT_TRUE(read_file(dir / "web/f") == text);
    text.replace(600000, 10, "CHANGED!!!");
    text.insert(100, "inserted");
    write_file(dir / "src/f", text);
    set_mtime(dir / "src/f", 1600000004);
    auto r = run("rsync -az --stats " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(read_file(dir / "web/f") == text);
    EXPECT_GT(stat_number(r.output, "Matched data"), 1000000) << r.output;
    text.replace(300000, 5, "ZZZZZ");
    write_file(dir / "web/f", text);
    set_mtime(dir / "web/f", 1600000005);
    auto p = run("rsync -az --stats " + url("web/") + " " + (dir / "src/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_TRUE(read_file(dir / "src/f") == text);
    EXPECT_GT(stat_number(p.output, "Matched data"), 1000000) << p.output;
}

TEST_F(RsyncInterop, ForcedProtocolVersionsDowngrade) {
    make_tree(dir, dir / "src");
    for (int v : {27, 29, 30, 31}) {
        std::string dest = "web/p" + std::to_string(v) + "/";
        auto r = run("rsync -az --protocol=" + std::to_string(v) + " " + (dir / "src/") + " " + url(dest));
        ASSERT_EQ(r.status, 0) << v << ": " << r.output;
        expect_same_tree(dir / "src", dir / ("web/p" + std::to_string(v)));
        auto p = run("rsync -az --protocol=" + std::to_string(v) + " " + url(dest) + " " +
                     (dir / ("back" + std::to_string(v) + "/")));
        ASSERT_EQ(p.status, 0) << v << ": " << p.output;
    }
}

TEST_F(RsyncInterop, UnsupportedOptionsAreReportedNotHung) {
    write_file(dir / "src/f", "x");
    auto r = run("rsync -a --write-devices " + (dir / "src/") + " " + url("web/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("not supported"), std::string::npos) << r.output;
    auto p = run("rsync -a -M--frobnicate " + url("web/") + " " + (dir / "x/"));
    EXPECT_NE(p.status, 0);
    EXPECT_NE(p.output.find("not supported"), std::string::npos) << p.output;
}

TEST_F(RsyncInterop, SymlinkPlantedInModuleCannotRedirectWrites) {
    fs::create_directories(dir / "outside");
    write_file(dir / "outside/secret", "top secret\n");
    fs::create_symlink(dir / "outside", dir / "web/escape");
    // A pull through the symlinked directory does not read outside the module.
    auto p = run("rsync -a " + url("web/escape/secret") + " " + (dir / "stolen"));
    EXPECT_NE(p.status, 0);
    EXPECT_FALSE(fs::exists(dir / "stolen"));
    // "escape/" (a link to a directory outside) is not followed: no outside content arrives.
    run("rsync -a " + url("web/escape/") + " " + (dir / "stolen2/"));
    EXPECT_FALSE(fs::exists(dir / "stolen2/secret"));
    // A push of escape/ as a directory replaces the link inside the module; nothing lands outside.
    fs::create_directories(dir / "src/escape");
    write_file(dir / "src/escape/secret", "overwritten\n");
    write_file(dir / "src/escape/new", "new\n");
    auto r = run("rsync -r " + (dir / "src/") + " " + url("web/"));
    EXPECT_EQ(read_file(dir / "outside/secret"), "top secret\n") << r.output;
    EXPECT_FALSE(fs::exists(dir / "outside/new"));
    // Writing to a path whose parent is a symlink out of the module fails cleanly.
    fs::remove_all(dir / "web/escape");
    fs::create_symlink(dir / "outside", dir / "web/escape");
    auto w = run("rsync " + (dir / "src/escape/new") + " " + url("web/escape/new"));
    EXPECT_NE(w.status, 0);
    EXPECT_FALSE(fs::exists(dir / "outside/new"));
}

TEST_F(RsyncInterop, MungedSymlinksAreStoredWithPrefix) {
    daemon.reset();
    daemon.emplace(dir, conf_for(dir, "[munged]\npath = " + (dir / "web") + "\nread only = no\nmunge symlinks = yes\n"));
    fs::create_directories(dir / "src");
    fs::create_symlink("/etc/passwd", dir / "src/l");
    auto r = run("rsync -a " + (dir / "src/") + " " + daemon->url("munged/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(fs::read_symlink(dir / "web/l").string(), "/rsyncd-munged//etc/passwd");
    auto p = run("rsync -a " + daemon->url("munged/") + " " + (dir / "back/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(fs::read_symlink(dir / "back/l").string(), "/etc/passwd");
}

}  // namespace
}  // namespace sfs::test

namespace sfs::test {
namespace {

// A 1 GiB sparse-ish file in which 4 KiB change moves only a few hundred KiB, both ways.
TEST_F(RsyncInterop, DeltaOfOneGibFileMovesLittle) {
    std::string src = dir / "src/big", dst = dir / "web/big";
    auto mk = run("truncate -s 1G " + src + " && for off in 0 300 700 1000; do "
                  "head -c 1048576 /dev/urandom | dd of=" + src + " bs=1M seek=$off conv=notrunc status=none; done"
                  " && cp --sparse=always " + src + " " + dst + " && touch -d @1600000000 " + dst);
    ASSERT_EQ(mk.status, 0) << mk.output;
    // Change 4 KiB in the middle of the source and push.
    auto ch = run("head -c 4096 /dev/urandom | dd of=" + src + " bs=4096 seek=131072 conv=notrunc status=none");
    ASSERT_EQ(ch.status, 0);
    auto r = run("rsync -a --stats " + src + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    auto sent = stat_number(r.output, "Total bytes sent");
    auto received = stat_number(r.output, "Total bytes received");
    EXPECT_GT(sent, 0) << r.output;
    EXPECT_LT(sent, 1024 * 1024) << r.output;
    EXPECT_LT(received, 1024 * 1024) << r.output;
    EXPECT_EQ(stat_number(r.output, "Literal data"), 32768) << r.output;   // one block
    EXPECT_EQ(run("cmp " + src + " " + dst).status, 0);
    // Change 4 KiB in the module copy and pull it back.
    auto ch2 = run("head -c 4096 /dev/urandom | dd of=" + dst + " bs=4096 seek=200000 conv=notrunc status=none"
                   " && touch -d @1600000001 " + dst);
    ASSERT_EQ(ch2.status, 0);
    auto p = run("rsync -a --stats " + url("web/big") + " " + src);
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_LT(stat_number(p.output, "Total bytes received"), 1024 * 1024) << p.output;
    EXPECT_LT(stat_number(p.output, "Total bytes sent"), 1024 * 1024) << p.output;
    EXPECT_EQ(run("cmp " + src + " " + dst).status, 0);
}

// A hand-written client: the daemon handshake, then raw protocol-27 bytes.
class RawClient {
public:
    RawClient(int port, const std::string& args) {
        fd_ = connect_port(port);
        if (fd_ < 0) return;
        send_text(fd_, "@RSYNCD: 27.0\n");
        greeting = read_line(fd_).value_or("");
        send_text(fd_, "web\n");
        ok = read_line(fd_).value_or("");
        send_text(fd_, args);
        unsigned char seed[4];
        seed_ok = ::read(fd_, seed, 4) == 4;
    }
    ~RawClient() {
        if (fd_ >= 0) ::close(fd_);
    }
    void send(const std::string& bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
    // Reads frames until EOF (bounded at 10 s); returns the text of error/info frames.
    std::string drain_messages() {
        std::string all, msgs;
        char buf[4096];
        for (;;) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 10000) <= 0) break;
            ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n <= 0) break;
            all.append(buf, static_cast<std::size_t>(n));
        }
        std::size_t pos = 0;
        while (pos + 4 <= all.size()) {
            std::uint32_t h = static_cast<unsigned char>(all[pos]) | (static_cast<unsigned char>(all[pos + 1]) << 8) |
                              (static_cast<unsigned char>(all[pos + 2]) << 16) |
                              (static_cast<std::uint32_t>(static_cast<unsigned char>(all[pos + 3])) << 24);
            std::size_t len = h & 0xFFFFFF;
            int tag = static_cast<int>(h >> 24) - 7;
            pos += 4;
            if (tag != 0) msgs += all.substr(pos, len);
            pos += len;
        }
        return msgs;
    }
    bool seed_ok = false;
    std::string greeting, ok;

private:
    int fd_ = -1;
};

std::string le32(std::int32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((static_cast<std::uint32_t>(v) >> (8 * i)) & 0xFF);
    return s;
}

std::string entry(const std::string& name, std::int32_t mode, std::int32_t size) {
    std::string e;
    e += static_cast<char>(0x01);                  // XMIT_TOP_DIR: a harmless non-zero flag
    e += static_cast<char>(name.size());
    e += name;
    e += le32(size);                               // longint below 2^31
    e += le32(1600000000);                         // mtime
    e += le32(mode);
    return e;
}

TEST_F(RsyncInterop, HostileFileListNamesAreRefused) {
    fs::create_directories(dir / "web/inner");
    for (const std::string bad : {"../evil", "/tmp/evil-abs", "inner/../../evil2"}) {
        RawClient c(daemon->port(), "--server\n-r\n.\nweb/inner/\n\n");
        ASSERT_TRUE(c.seed_ok) << c.greeting << " / " << c.ok;
        c.send(entry(bad, S_IFREG | 0644, 5) + std::string(1, '\0') + le32(0));
        auto msgs = c.drain_messages();
        EXPECT_NE(msgs.find("unsafe pathname"), std::string::npos) << bad << ": " << msgs;
    }
    EXPECT_FALSE(fs::exists(dir / "web/evil"));
    EXPECT_FALSE(fs::exists(dir / "evil"));
    EXPECT_FALSE(fs::exists("/tmp/evil-abs"));
    EXPECT_FALSE(fs::exists(dir / "evil2"));
}

TEST_F(RsyncInterop, HostileLengthsAndIndicesAreRefused) {
    {
        // A name length of 2 GiB.
        RawClient c(daemon->port(), "--server\n-r\n.\nweb/\n\n");
        ASSERT_TRUE(c.seed_ok);
        c.send(std::string(1, '\x40') + le32(0x7fffffff) + "xxxx");
        auto msgs = c.drain_messages();
        EXPECT_NE(msgs.find("out of range"), std::string::npos) << msgs;
    }
    {
        // A valid one-file list, then a block token beyond the (empty) basis.
        RawClient c(daemon->port(), "--server\n-r\n.\nweb/\n\n");
        ASSERT_TRUE(c.seed_ok);
        c.send(entry("f", S_IFREG | 0644, 5) + std::string(1, '\0') + le32(0));
        c.send(le32(0) + le32(0) + le32(0) + le32(0) + le32(0) + le32(-(5 + 1)));
        auto msgs = c.drain_messages();
        EXPECT_NE(msgs.find("block index 5 out of range"), std::string::npos) << msgs;
        EXPECT_FALSE(fs::exists(dir / "web/f"));
        for (const auto& e : fs::directory_iterator(dir / "web"))
            ADD_FAILURE() << "left behind: " << e.path();
    }
    {
        // A file index outside the list.
        RawClient c(daemon->port(), "--server\n-r\n.\nweb/\n\n");
        ASSERT_TRUE(c.seed_ok);
        c.send(entry("g", S_IFREG | 0644, 5) + std::string(1, '\0') + le32(0));
        c.send(le32(7));
        auto msgs = c.drain_messages();
        EXPECT_NE(msgs.find("invalid file index 7"), std::string::npos) << msgs;
    }
    {
        // Truncated file list: the connection ends; nothing is created, no hang.
        RawClient c(daemon->port(), "--server\n-r\n.\nweb/\n\n");
        ASSERT_TRUE(c.seed_ok);
        c.send(entry("h", S_IFREG | 0644, 5).substr(0, 7));
        ::shutdown(0, 0);
    }
    EXPECT_FALSE(fs::exists(dir / "web/h"));
}

}  // namespace
}  // namespace sfs::test

namespace sfs::test {
namespace {

TEST_F(RsyncInterop, PullHonoursTheClientsExcludes) {
    make_tree(dir, dir / "web");
    auto r = run("rsync -a --exclude='*.txt' --exclude=/exec.sh " + url("web/") + " " + (dir / "dst/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_FALSE(fs::exists(dir / "dst/a.txt"));
    EXPECT_FALSE(fs::exists(dir / "dst/sub/big.txt"));
    EXPECT_FALSE(fs::exists(dir / "dst/exec.sh"));
    EXPECT_TRUE(fs::exists(dir / "dst/sub/private"));
}

}  // namespace
}  // namespace sfs::test

namespace sfs::test {
namespace {

// A full disk on the mirror: the client gets the error, the old file stays intact, no temp
// file is left behind, and the session goes on with the next file.
TEST_F(RsyncInterop, FullDiskKeepsTheOldFileAndReportsTheError) {
    if (::mount("tmpfs", (dir / "web").c_str(), "tmpfs", 0, "size=1m") != 0)
        GTEST_SKIP() << "cannot mount a small tmpfs: " << std::strerror(errno);
    struct Unmount {
        std::string p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{dir / "web"};
    write_file(dir / "web/big.bin", "old contents\n");
    write_file(dir / "web/small", "old\n");
    ASSERT_EQ(run("head -c 3000000 /dev/urandom > " + (dir / "src/big.bin")).status, 0);
    write_file(dir / "src/small", "new\n");
    set_mtime(dir / "src/small", 1600000000);
    auto r = run("rsync -r -t " + (dir / "src/") + " " + url("web/"));
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
    EXPECT_EQ(read_file(dir / "web/big.bin"), "old contents\n");
    EXPECT_EQ(read_file(dir / "web/small"), "new\n");
    for (const auto& e : fs::directory_iterator(dir / "web")) {
        std::string n = e.path().filename().string();
        EXPECT_TRUE(n == "big.bin" || n == "small") << "left behind: " << n;
    }
}

}  // namespace
}  // namespace sfs::test

namespace sfs::test {
namespace {

TEST_F(RsyncInterop, DirsModeDeletesOnlyInTheTopDirectory) {
    fs::create_directories(dir / "src/sub");
    write_file(dir / "src/keep", "k");
    fs::create_directories(dir / "web/sub");
    write_file(dir / "web/gone", "x");
    write_file(dir / "web/sub/untouched", "x");
    auto r = run("rsync -d --delete " + (dir / "src/") + " " + url("web/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_FALSE(fs::exists(dir / "web/gone"));
    EXPECT_TRUE(fs::exists(dir / "web/sub/untouched"));   // sub's contents were not sent
    EXPECT_EQ(read_file(dir / "web/keep"), "k");
}

TEST_F(RsyncInterop, PullThroughAnInModuleDirectorySymlink) {
    make_tree(dir, dir / "web/real");
    fs::create_symlink("real", dir / "web/alias");
    auto r = run("rsync -a " + url("web/alias/") + " " + (dir / "dst/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "dst/a.txt"), "hello\n");
    EXPECT_TRUE(fs::exists(dir / "dst/sub/big.txt"));
}

}  // namespace
}  // namespace sfs::test
