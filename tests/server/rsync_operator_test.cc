// What operators run against an rsync daemon, through the real rsync client and the real
// syncfsd on a random loopback port: --link-dest/--compare-dest/--copy-dest snapshots,
// --partial-dir/--delay-updates/--temp-dir, --remove-source-files, -R and --files-from,
// pre-xfer/post-xfer exec with %VAR% expansion, and &include/&merge in the config.
#include <sys/stat.h>

#include <filesystem>

#include "daemon_harness.h"

namespace sfs::test {
namespace {

namespace fs = std::filesystem;

ino_t inode(const std::string& p) {
    struct stat st {};
    return ::lstat(p.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string base_conf(const TempDir& dir, const std::string& modules) {
    return "use chroot = no\nuid = root\ngid = root\nmunge symlinks = no\n"
           "log file = " + (dir / "syncfsd.log") + "\n" + modules;
}

class RsyncOperator : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(dir / "mod");
        fs::create_directories(dir / "src");
    }
    std::string url(const std::string& rest) const { return d->url(rest); }
    void start(const std::string& extra_modules = "") {
        d.emplace(dir, base_conf(dir, "[mod]\npath = " + (dir / "mod") + "\nread only = no\n" + extra_modules));
        ASSERT_GT(d->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    }
    TempDir dir;
    std::optional<Daemon> d;
};

std::string big_text(const std::string& seed) {
    std::string t;
    for (int i = 0; i < 3000; ++i) t += seed + " line " + std::to_string(i) + "\n";
    return t;
}

TEST_F(RsyncOperator, LinkDestHardLinksUnchangedFilesOfTheLastSnapshot) {
    start();
    write_file(dir / "src/same", big_text("same"));
    write_file(dir / "src/changed", big_text("changed"));
    fs::create_directories(dir / "src/sub");
    write_file(dir / "src/sub/deep", "deep\n");
    // Snapshot 01 as a previous run left it.
    auto r1 = run("rsync -a " + (dir / "src/") + " " + url("mod/01/"));
    ASSERT_EQ(r1.status, 0) << r1.output;
    write_file(dir / "src/changed", big_text("changed") + "one more line\n");
    auto r2 = run("rsync -a --stats --link-dest=../01 " + (dir / "src/") + " " + url("mod/02/"));
    ASSERT_EQ(r2.status, 0) << r2.output;
    EXPECT_EQ(inode(dir / "mod/02/same"), inode(dir / "mod/01/same"));
    EXPECT_EQ(inode(dir / "mod/02/sub/deep"), inode(dir / "mod/01/sub/deep"));
    EXPECT_NE(inode(dir / "mod/02/changed"), inode(dir / "mod/01/changed"));
    EXPECT_EQ(read_file(dir / "mod/02/changed"), big_text("changed") + "one more line\n");
    EXPECT_EQ(read_file(dir / "mod/01/changed"), big_text("changed"));
    // The changed file was sent as a delta against 01's copy, not whole.
    EXPECT_NE(r2.output.find("Matched data: "), std::string::npos) << r2.output;
    EXPECT_EQ(r2.output.find("Matched data: 0 bytes"), std::string::npos) << r2.output;
    auto diff = run("diff -r " + (dir / "src") + " " + (dir / "mod/02"));
    EXPECT_EQ(diff.status, 0) << diff.output;
}

TEST_F(RsyncOperator, CompareDestSkipsAndCopyDestCopiesLocally) {
    start();
    write_file(dir / "src/f", big_text("f"));
    write_file(dir / "src/g", "only in src\n");
    auto r1 = run("rsync -a " + (dir / "src/f") + " " + url("mod/base/"));
    ASSERT_EQ(r1.status, 0) << r1.output;
    auto c = run("rsync -a --compare-dest=../base " + (dir / "src/") + " " + url("mod/diffs/"));
    ASSERT_EQ(c.status, 0) << c.output;
    EXPECT_FALSE(fs::exists(dir / "mod/diffs/f"));
    EXPECT_EQ(read_file(dir / "mod/diffs/g"), "only in src\n");
    auto p = run("rsync -a --stats --copy-dest=../base " + (dir / "src/") + " " + url("mod/copy/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(read_file(dir / "mod/copy/f"), big_text("f"));
    EXPECT_NE(inode(dir / "mod/copy/f"), inode(dir / "mod/base/f"));
    // Only g's 12 bytes came over the wire.
    EXPECT_NE(p.output.find("Literal data: 12 bytes"), std::string::npos) << p.output;
}

TEST_F(RsyncOperator, BasisDirsStayInsideTheModule) {
    start();
    fs::create_directories(dir / "outside");
    write_file(dir / "outside/f", "secret\n");
    write_file(dir / "src/f", "secret\n");
    auto t = fs::last_write_time(dir / "src/f");
    fs::last_write_time(dir / "outside/f", t);
    fs::create_symlink(dir / "outside", dir / "mod/escape");
    // "../outside" from the module root is clamped to "outside" in the module: missing.
    auto r = run("rsync -a --link-dest=../outside " + (dir / "src/") + " " + url("mod/a/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("--link-dest arg does not exist: outside"), std::string::npos) << r.output;
    EXPECT_NE(inode(dir / "mod/a/f"), inode(dir / "outside/f"));
    // A basis dir that is a symlink leading out of the module finds nothing.
    auto s = run("rsync -a --link-dest=/escape " + (dir / "src/") + " " + url("mod/b/"));
    ASSERT_EQ(s.status, 0) << s.output;
    EXPECT_EQ(read_file(dir / "mod/b/f"), "secret\n");
    EXPECT_NE(inode(dir / "mod/b/f"), inode(dir / "outside/f"));
}

TEST_F(RsyncOperator, BasisDirExcludedByTheModuleRejectsTheOptions) {
    start("exclude = /private/\n");
    fs::create_directories(dir / "mod/private");
    write_file(dir / "src/f", "x\n");
    auto r = run("rsync -a --link-dest=/private " + (dir / "src/") + " " + url("mod/a/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("Your options have been rejected by the server."), std::string::npos) << r.output;
}

TEST_F(RsyncOperator, PartialDirFileIsTheBasisAndIsRemovedAfterwards) {
    start();
    std::string text = big_text("partial");
    write_file(dir / "src/f", text);
    // What an interrupted transfer left: the first half in the partial dir.
    fs::create_directories(dir / "mod/dst/.rsync-partial");
    write_file(dir / "mod/dst/.rsync-partial/f", text.substr(0, text.size() / 2));
    auto r = run("rsync -a --stats --partial-dir=.rsync-partial " + (dir / "src/") + " " + url("mod/dst/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "mod/dst/f"), text);
    EXPECT_FALSE(fs::exists(dir / "mod/dst/.rsync-partial"));
    EXPECT_EQ(r.output.find("Matched data: 0 bytes"), std::string::npos) << r.output;
}

TEST_F(RsyncOperator, DelayUpdatesAndTempDir) {
    start();
    fs::create_directories(dir / "src/sub");
    write_file(dir / "src/a", "a\n");
    write_file(dir / "src/sub/b", "b\n");
    auto r = run("rsync -a --delay-updates " + (dir / "src/") + " " + url("mod/dst/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "mod/dst/a"), "a\n");
    EXPECT_EQ(read_file(dir / "mod/dst/sub/b"), "b\n");
    EXPECT_FALSE(fs::exists(dir / "mod/dst/.~tmp~"));
    EXPECT_FALSE(fs::exists(dir / "mod/dst/sub/.~tmp~"));
    fs::create_directories(dir / "mod/tmp");
    write_file(dir / "src/a", "a2\n");
    auto t = run("rsync -a --temp-dir=/tmp " + (dir / "src/") + " " + url("mod/dst/"));
    ASSERT_EQ(t.status, 0) << t.output;
    EXPECT_EQ(read_file(dir / "mod/dst/a"), "a2\n");
    EXPECT_TRUE(fs::is_empty(dir / "mod/tmp"));
}

TEST_F(RsyncOperator, RemoveSourceFiles) {
    fs::create_directories(dir / "ro");
    start("[ro]\npath = " + (dir / "ro") + "\n");
    fs::create_directories(dir / "src/sub");
    write_file(dir / "src/a", "a\n");
    write_file(dir / "src/sub/b", "b\n");
    write_file(dir / "src/c", "c\n");   // already there: removed from the source too
    fs::create_directories(dir / "mod/in");
    write_file(dir / "mod/in/c", "c\n");
    fs::last_write_time(dir / "mod/in/c", fs::last_write_time(dir / "src/c"));
    auto r = run("rsync -a --remove-source-files " + (dir / "src/") + " " + url("mod/in/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "mod/in/a"), "a\n");
    EXPECT_EQ(read_file(dir / "mod/in/sub/b"), "b\n");
    EXPECT_FALSE(fs::exists(dir / "src/a"));
    EXPECT_FALSE(fs::exists(dir / "src/sub/b"));
    EXPECT_FALSE(fs::exists(dir / "src/c"));
    // A download: the client multiplexes its stream and reports each file it has.
    auto p = run("rsync -a --remove-source-files " + url("mod/in/") + " " + (dir / "back/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(read_file(dir / "back/a"), "a\n");
    EXPECT_EQ(read_file(dir / "back/sub/b"), "b\n");
    EXPECT_FALSE(fs::exists(dir / "mod/in/a"));
    EXPECT_FALSE(fs::exists(dir / "mod/in/sub/b"));
    EXPECT_TRUE(fs::is_directory(dir / "mod/in/sub"));   // directories stay, as with rsync
    // Removing files is writing: a read-only module refuses it.
    write_file(dir / "ro/f", "f\n");
    auto ro = run("rsync -a --remove-source-files " + url("ro/") + " " + (dir / "back2/"));
    EXPECT_NE(ro.status, 0);
    EXPECT_NE(ro.output.find("cannot be used with a read-only module"), std::string::npos) << ro.output;
    EXPECT_TRUE(fs::exists(dir / "ro/f"));
}

TEST_F(RsyncOperator, MissingArgsAreIgnoredOrDeleted) {
    start();
    write_file(dir / "src/keep", "keep\n");
    fs::create_directories(dir / "mod/m/ghostdir");
    write_file(dir / "mod/m/ghost", "ghost\n");
    write_file(dir / "mod/m/ghostdir/inner", "inner\n");
    write_file(dir / "list", "keep\nghost\nghostdir\n");
    // Push: the client sends the missing names with mode 0, the daemon deletes them.
    auto r = run("rsync -a --delete-missing-args --files-from=" + (dir / "list") + " " + (dir / "src/") + " " +
                 url("mod/m/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "mod/m/keep"), "keep\n");
    EXPECT_FALSE(fs::exists(dir / "mod/m/ghost"));
    EXPECT_FALSE(fs::exists(dir / "mod/m/ghostdir"));
    // Pull: a missing name is skipped quietly (exit 0), or deleted on the client.
    auto i = run("rsync -a --ignore-missing-args " + url("mod/m/keep") + " " + url("mod/m/nothere") + " " +
                 (dir / "pulled/"));
    ASSERT_EQ(i.status, 0) << i.output;
    EXPECT_EQ(read_file(dir / "pulled/keep"), "keep\n");
    write_file(dir / "pulled/nothere", "stale\n");
    auto dm = run("rsync -a --delete-missing-args " + url("mod/m/keep") + " " + url("mod/m/nothere") + " " +
                  (dir / "pulled/"));
    ASSERT_EQ(dm.status, 0) << dm.output;
    EXPECT_FALSE(fs::exists(dir / "pulled/nothere"));
}

TEST_F(RsyncOperator, UserAndGroupMaps) {
    start();
    write_file(dir / "src/f", "f\n");
    ASSERT_EQ(::chown((dir / "src/f").c_str(), 0, 0), 0);
    auto r = run("rsync -rog --usermap='*:65534' --groupmap='0-10:65534' " + (dir / "src/") + " " + url("mod/m/"));
    ASSERT_EQ(r.status, 0) << r.output;
    struct stat st {};
    ASSERT_EQ(::lstat((dir / "mod/m/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);
    EXPECT_EQ(st.st_gid, 65534u);
    auto c = run("rsync -rog --chown=65533:65533 " + (dir / "src/") + " " + url("mod/c/"));
    ASSERT_EQ(c.status, 0) << c.output;
    ASSERT_EQ(::lstat((dir / "mod/c/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65533u);
    EXPECT_EQ(st.st_gid, 65533u);
    auto bad = run("rsync -rg --groupmap=nocolon " + (dir / "src/") + " " + url("mod/b/"));
    EXPECT_NE(bad.status, 0);
}

TEST_F(RsyncOperator, RelativePathsAndFilesFrom) {
    start();
    fs::create_directories(dir / "src/a/b");
    write_file(dir / "src/a/b/c", "c\n");
    write_file(dir / "src/a/top", "top\n");
    // Push -R: the path comes along.
    auto r = run("rsync -aR " + (dir / "src/./a/b/c") + " " + url("mod/r/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "mod/r/a/b/c"), "c\n");
    EXPECT_FALSE(fs::exists(dir / "mod/r/a/top"));
    // --no-implied-dirs: the daemon makes the missing parents itself.
    auto n = run("rsync -aR --no-implied-dirs " + (dir / "src/./a/b/c") + " " + url("mod/n/"));
    ASSERT_EQ(n.status, 0) << n.output;
    EXPECT_EQ(read_file(dir / "mod/n/a/b/c"), "c\n");
    // Push with a local --files-from (the client builds the -R list).
    write_file(dir / "list", "a/top\na/b/c\n");
    auto f = run("rsync -a --files-from=" + (dir / "list") + " " + (dir / "src/") + " " + url("mod/f/"));
    ASSERT_EQ(f.status, 0) << f.output;
    EXPECT_EQ(read_file(dir / "mod/f/a/top"), "top\n");
    EXPECT_EQ(read_file(dir / "mod/f/a/b/c"), "c\n");
    // Pull -R with "/./": only the part after it is kept.
    auto p = run("rsync -aR " + url("mod/r/a/./b/c") + " " + (dir / "pull/"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(read_file(dir / "pull/b/c"), "c\n");
    EXPECT_FALSE(fs::exists(dir / "pull/a"));
    // Pull with a local --files-from: the names travel to the daemon after the excludes.
    write_file(dir / "plist", "a/top\n");
    auto q = run("rsync -a --files-from=" + (dir / "plist") + " " + url("mod/f/") + " " + (dir / "pf/"));
    ASSERT_EQ(q.status, 0) << q.output;
    EXPECT_EQ(read_file(dir / "pf/a/top"), "top\n");
    EXPECT_FALSE(fs::exists(dir / "pf/a/b"));
    // -R --delete deletes inside the named directory only, never in its implied parents.
    write_file(dir / "mod/r/a/stray", "keep: a is only implied\n");
    write_file(dir / "mod/r/a/b/stray", "delete: b is a transfer root\n");
    auto del = run("rsync -aR --delete " + (dir / "src/./a/b") + " " + url("mod/r/"));
    ASSERT_EQ(del.status, 0) << del.output;
    EXPECT_TRUE(fs::exists(dir / "mod/r/a/stray"));
    EXPECT_FALSE(fs::exists(dir / "mod/r/a/b/stray"));
    // ".." in a -R name is refused.
    auto bad = run("rsync -aR " + url("mod/r/a/./../../x") + " " + (dir / "bad/"));
    EXPECT_NE(bad.status, 0);
}

TEST_F(RsyncOperator, PreAndPostXferExec) {
    write_file(dir / "pre.sh",
               "#!/bin/sh\n{ echo \"module=$RSYNC_MODULE_NAME\"; echo \"path=$RSYNC_MODULE_PATH\"; "
               "echo \"addr=$RSYNC_HOST_ADDR\"; echo \"request=$RSYNC_REQUEST\"; echo \"arg0=$RSYNC_ARG0\"; "
               "echo \"arg1=$RSYNC_ARG1\"; } > " + (dir / "pre.out") + "\n",
               0755);
    write_file(dir / "post.sh", "#!/bin/sh\necho \"status=$RSYNC_EXIT_STATUS\" > " + (dir / "post.out") + "\n", 0755);
    write_file(dir / "deny.sh", "#!/bin/sh\necho 'not today'\nexit 3\n", 0755);
    fs::create_directories(dir / "hooked");
    fs::create_directories(dir / "denied");
    fs::create_directories(dir / "my mod");
    start("[hooked]\npath = " + (dir / "hooked") + "\nread only = no\npre-xfer exec = " + (dir / "pre.sh") +
          "\npost-xfer exec = " + (dir / "post.sh") + "\n"
          "[denied]\npath = " + (dir / "denied") + "\nread only = no\npre-xfer exec = " + (dir / "deny.sh") + "\n"
          "[spaced]\npath = " + (dir / "my mod") + "\npre-xfer exec = echo %RSYNC_MODULE_PATH% > /dev/null\n"
          "[quoted]\npath = " + (dir / "hooked") + "\npre-xfer exec = echo '%RSYNC_MODULE_NAME%' > " +
          (dir / "quoted.out") + "\n");
    write_file(dir / "src/f", "f\n");
    auto r = run("rsync -a " + (dir / "src/") + " " + url("hooked/sub/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir / "hooked/sub/f"), "f\n");
    std::string pre = read_file(dir / "pre.out");
    EXPECT_NE(pre.find("module=hooked\n"), std::string::npos) << pre;
    EXPECT_NE(pre.find("path=" + (dir / "hooked") + "\n"), std::string::npos) << pre;
    EXPECT_NE(pre.find("addr=127.0.0.1\n"), std::string::npos) << pre;
    EXPECT_NE(pre.find("request=hooked/sub/\n"), std::string::npos) << pre;
    EXPECT_NE(pre.find("arg0=rsyncd\narg1=--server\n"), std::string::npos) << pre;
    EXPECT_TRUE(file_gets(dir / "post.out", "status=0\n"));
    // A failing pre-xfer exec refuses the transfer and the client sees why.
    auto f = run("rsync -a " + (dir / "src/") + " " + url("denied/"));
    EXPECT_NE(f.status, 0);
    EXPECT_NE(f.output.find("pre-xfer exec returned failure (768)"), std::string::npos) << f.output;
    EXPECT_NE(f.output.find("not today"), std::string::npos) << f.output;
    EXPECT_FALSE(fs::exists(dir / "denied/f"));
    // A value with a shell metacharacter (here a space) is never put into a command.
    auto s = run("rsync -a " + url("spaced/") + " " + (dir / "out/"));
    EXPECT_NE(s.status, 0);
    EXPECT_TRUE(d->log_has("refusing to run shell hook: %RSYNC_MODULE_PATH% holds a shell metacharacter"));
    // Inside single quotes the value goes in bare and arrives intact.
    auto q = run("rsync -a " + url("quoted/") + " " + (dir / "out2/"));
    ASSERT_EQ(q.status, 0) << q.output;
    EXPECT_EQ(read_file(dir / "quoted.out"), "quoted\n");
}

TEST_F(RsyncOperator, IncludeMergeAndPathVariables) {
    fs::create_directories(dir / "conf.d");
    fs::create_directories(dir / "served/alpha");
    write_file(dir / "served/alpha/hello", "hello\n");
    write_file(dir / "conf.d/b.conf", "[beta]\npath = " + (dir / "mod") + "\ncomment = from b\n");
    write_file(dir / "conf.d/a.conf", "comment = a-default\n[alpha]\npath = " + (dir / "served/%RSYNC_MODULE_NAME%") + "\n");
    write_file(dir / "conf.d/ignored.txt", "[ignored]\npath = /\n");
    write_file(dir / "extra.inc", "[merged]\npath = " + (dir / "mod") + "\n");
    d.emplace(dir, base_conf(dir, "&merge " + (dir / "extra.inc") + "\n&include = " + (dir / "conf.d") + "\n"
                                  "[after]\npath = " + (dir / "mod") + "\n"));
    ASSERT_GT(d->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    auto l = run("rsync " + url(""));
    ASSERT_EQ(l.status, 0) << l.output;
    // Listing order: the merged module, the included files in name order, then the rest.
    auto pos = [&](const std::string& s) { return l.output.find(s); };
    ASSERT_NE(pos("merged"), std::string::npos) << l.output;
    ASSERT_NE(pos("alpha"), std::string::npos) << l.output;
    ASSERT_NE(pos("beta"), std::string::npos) << l.output;
    ASSERT_NE(pos("after"), std::string::npos) << l.output;
    EXPECT_LT(pos("merged"), pos("alpha"));
    EXPECT_LT(pos("alpha"), pos("beta"));
    EXPECT_LT(pos("beta"), pos("after"));
    EXPECT_EQ(pos("ignored"), std::string::npos) << l.output;
    // a.conf's global line is a default for its own module only.
    EXPECT_NE(l.output.find("a-default"), std::string::npos) << l.output;
    EXPECT_EQ(l.output.find("a-default", pos("beta")), std::string::npos) << l.output;
    // %RSYNC_MODULE_NAME% in `path`, expanded verbatim.
    auto p = run("rsync -a " + url("alpha/hello") + " " + (dir / "got"));
    ASSERT_EQ(p.status, 0) << p.output;
    EXPECT_EQ(read_file(dir / "got"), "hello\n");
}

TEST_F(RsyncOperator, AuthDigestFloor) {
    write_file(dir / "secrets", "tuser:secretpass\n", 0600);
    std::string auth = "auth users = tuser\nsecrets file = " + (dir / "secrets") + "\n";
    start("[strong]\npath = " + (dir / "mod") + "\n" + auth + "auth digest = sha256\n"
          "[bogus]\npath = " + (dir / "mod") + "\n" + auth + "auth digest = no-such-digest\n");
    write_file(dir / "mod/f", "f\n");
    std::string url_s = "rsync://tuser@127.0.0.1:" + std::to_string(d->port()) + "/";
    // The stock client negotiates sha512 (our first choice), which clears a sha256 floor.
    auto ok = run("env RSYNC_PASSWORD=secretpass rsync " + url_s + "strong/f " + (dir / "got"));
    ASSERT_EQ(ok.status, 0) << ok.output;
    EXPECT_EQ(read_file(dir / "got"), "f\n");
    auto bad = run("env RSYNC_PASSWORD=secretpass rsync " + url_s + "bogus/f " + (dir / "got2"));
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.output.find("auth failed on module bogus"), std::string::npos) << bad.output;
    // A client that only offers md5 is below the floor: refused before any challenge.
    int fd = connect_port(d->port());
    ASSERT_GE(fd, 0);
    read_line(fd);
    send_text(fd, "@RSYNCD: 31.0 md5 md4\nstrong\n");
    auto reply = read_line(fd);
    ::close(fd);
    ASSERT_TRUE(reply);
    EXPECT_EQ(*reply, "@ERROR: auth failed on module strong");
    EXPECT_TRUE(d->log_has("negotiated auth digest md5 is weaker than the required 'auth digest = sha256'"));
}

}  // namespace
}  // namespace sfs::test
