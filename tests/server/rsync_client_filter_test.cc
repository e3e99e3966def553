// The client's own filter options on the daemon side (-M/--remote-option: --filter with
// merge `.` and dir-merge `:` rules, --exclude-from), through the real rsync client and the
// real syncfsd on a random loopback port: merge files are honoured, confined beneath the
// module, never read where the module's own rules hide them, and bounded.
#include <sys/stat.h>

#include <filesystem>

#include "daemon_harness.h"

namespace sfs::test {
namespace {

namespace fs = std::filesystem;

class RsyncClientFilter : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(dir / "mod");
        fs::create_directories(dir / "out");
    }
    void start(const std::string& module_extra = "") {
        d.emplace(dir, "use chroot = no\nuid = root\ngid = root\nmunge symlinks = no\nlog file = " +
                           (dir / "syncfsd.log") + "\n[mod]\npath = " + (dir / "mod") + "\nread only = no\n" +
                           module_extra);
        ASSERT_GT(d->pid(), 0) << read_file(dir / "syncfsd.log.stderr");
    }
    RunResult pull(const std::string& opts, const std::string& dest) {
        fs::remove_all(dir / dest);
        fs::create_directories(dir / dest);
        return run("rsync -a " + opts + " " + d->url("mod/") + " " + (dir / dest) + "/");
    }
    bool has(const std::string& rel) const { return fs::exists(fs::symlink_status(dir / rel)); }
    TempDir dir;
    std::optional<Daemon> d;
};

// daemon-filter-merge-bypass: a merge file the module's `filter` hides is treated as
// absent, by its module path however the client spells it, and never through a symlink.
TEST_F(RsyncClientFilter, MergeFileHiddenByTheModuleIsNeverRead) {
    start("filter = - /secret/***\n");
    fs::create_directories(dir / "mod/secret");
    write_file(dir / "mod/public.txt", "PUBLIC\n");
    write_file(dir / "mod/secret/rules", "- *\n");
    for (const std::string spelling : {"._/secret/rules", "._secret/rules", "._sub/../secret/rules", "._../../secret/rules",
                                       "._/./secret//rules", "merge /secret/rules"}) {
        auto r = pull("-M'--filter=" + spelling + "'", "out");
        EXPECT_EQ(r.status, 0) << spelling << ": " << r.output;
        EXPECT_EQ(read_file(dir / "out/public.txt"), "PUBLIC\n") << spelling << ": the hidden rules were applied";
        EXPECT_FALSE(has("out/secret")) << spelling;
    }
    // A symlink in the module naming the hidden file is not followed: the merge file
    // counts as missing (an error), its rules never apply.
    fs::create_symlink("secret/rules", dir / "mod/link");
    auto r = pull("-M--filter=._link", "out");
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("failed to open merge file link"), std::string::npos) << r.output;
    // --exclude-from of a hidden file is refused outright, as rsyncd does.
    auto x = pull("-M--exclude-from=/secret/rules", "out");
    EXPECT_NE(x.status, 0) << x.output;
    EXPECT_NE(x.output.find("Your options have been rejected by the server."), std::string::npos) << x.output;
}

TEST_F(RsyncClientFilter, MergeFileAndExcludeFromInTheModuleAreApplied) {
    start();
    fs::create_directories(dir / "mod/conf");
    write_file(dir / "mod/conf/rules", "# build output\n- *.o\n+ keep.log\n- *.log\n");
    write_file(dir / "mod/a.c", "c\n");
    write_file(dir / "mod/a.o", "o\n");
    write_file(dir / "mod/keep.log", "k\n");
    write_file(dir / "mod/drop.log", "d\n");
    auto r = pull("-M--filter=._conf/rules", "out");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(has("out/a.c"));
    EXPECT_FALSE(has("out/a.o"));
    EXPECT_TRUE(has("out/keep.log"));
    EXPECT_FALSE(has("out/drop.log"));
    // The same file as --exclude-from (old prefixes: "+ " lines still include).
    auto x = pull("-M--exclude-from=conf/rules", "out2");
    ASSERT_EQ(x.status, 0) << x.output;
    EXPECT_TRUE(has("out2/a.c"));
    EXPECT_FALSE(has("out2/a.o"));
    EXPECT_TRUE(has("out2/keep.log"));
    // A merge file that does not exist is an error that names it.
    auto m = pull("-M--filter=._nope", "out3");
    EXPECT_NE(m.status, 0);
    EXPECT_NE(m.output.find("failed to open merge file nope"), std::string::npos) << m.output;
    // A syntax error names the rule.
    auto u = pull("-M'--filter=Z foo'", "out4");
    EXPECT_NE(u.status, 0);
    EXPECT_NE(u.output.find("Unknown filter rule"), std::string::npos) << u.output;
}

// A dir-merge rule on a pull: each directory's file adds rules for it and (inherited) below
// it; '/' anchors at that file's directory; `e` hides the merge files themselves.
TEST_F(RsyncClientFilter, DirMergeRulesOnAPull) {
    start("exclude = hidden-rules\n");
    fs::create_directories(dir / "mod/sub/deeper");
    fs::create_directories(dir / "mod/other");
    write_file(dir / "mod/.rules", "- *.tmp\n");
    write_file(dir / "mod/sub/.rules", "- /anch\n- keep*\n");
    for (const char* f : {"a.tmp", "a.txt", "anch", "sub/anch", "sub/keep1", "sub/deeper/anch", "sub/deeper/x.tmp",
                          "other/keep2"})
        write_file(dir / (std::string("mod/") + f), "x\n");
    auto r = pull("-M'--filter=:e .rules'", "out");
    ASSERT_EQ(r.status, 0) << r.output;
    for (const char* f : {"out/a.txt", "out/anch", "out/sub/deeper/anch", "out/other/keep2"})
        EXPECT_TRUE(has(f)) << f;
    for (const char* f : {"out/a.tmp", "out/sub/anch", "out/sub/keep1", "out/sub/deeper/x.tmp", "out/.rules",
                          "out/sub/.rules"})
        EXPECT_FALSE(has(f)) << f;
    // A per-directory file the module hides is never read.
    write_file(dir / "mod/hidden-rules", "- *\n");
    auto h = pull("-M'--filter=: hidden-rules'", "out2");
    ASSERT_EQ(h.status, 0) << h.output;
    EXPECT_TRUE(has("out2/a.txt"));
    EXPECT_TRUE(has("out2/sub/keep1"));
    EXPECT_FALSE(has("out2/hidden-rules"));
    // A per-directory file above 1 MiB ends the walk of that directory with an error.
    write_file(dir / "mod/other/.big", "- x\n" + std::string(2u << 20, '#'));
    auto b = pull("-M'--filter=: .big'", "out3");
    EXPECT_NE(b.status, 0);
    EXPECT_NE(b.output.find("larger than 1 MiB"), std::string::npos) << b.output;
    EXPECT_FALSE(has("out3/other/keep2"));
}

// On a push, the destination's per-directory files protect names from --delete.
TEST_F(RsyncClientFilter, DirMergeRulesProtectOnAPushWithDelete) {
    start();
    fs::create_directories(dir / "src/sub");
    write_file(dir / "src/new", "n\n");
    write_file(dir / "src/sub/s", "s\n");
    fs::create_directories(dir / "mod/dst/sub");
    write_file(dir / "mod/dst/.keep-rules", "P local*\n");
    write_file(dir / "mod/dst/local.cfg", "mine\n");
    write_file(dir / "mod/dst/gone", "g\n");
    write_file(dir / "mod/dst/sub/local.db", "mine too\n");   // protected by the inherited rule
    write_file(dir / "mod/dst/sub/gone2", "g\n");
    auto r = run("rsync -a --delete -M'--filter=:e .keep-rules' " + (dir / "src/") + " " + d->url("mod/dst/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(has("mod/dst/local.cfg"));
    EXPECT_TRUE(has("mod/dst/sub/local.db"));
    EXPECT_TRUE(has("mod/dst/.keep-rules"));
    EXPECT_FALSE(has("mod/dst/gone"));
    EXPECT_FALSE(has("mod/dst/sub/gone2"));
    EXPECT_TRUE(has("mod/dst/new"));
    EXPECT_TRUE(has("mod/dst/sub/s"));
}

// Depth does not bound merge work: seven levels of files of 20 lines `. next` are 20^7 reads
// from a few KiB of text (hours of CPU for one connection). The top-level merges of a
// session and the dir-merge files of each directory have a read budget; past it the
// transfer fails with a message, quickly.
TEST_F(RsyncClientFilter, FanOutOfNestedMergeFilesIsBounded) {
    start();
    write_file(dir / "mod/f.txt", "F\n");
    for (int level = 0; level < 7; ++level) {
        std::string text;
        for (int j = 0; j < 20; ++j) text += ". L" + std::to_string(level + 1) + "\n";
        write_file(dir / ("mod/L" + std::to_string(level)), text);
    }
    write_file(dir / "mod/L7", "- nothing\n");
    const auto t0 = std::chrono::steady_clock::now();
    auto top = pull("-M--filter=._L0", "out");
    EXPECT_NE(top.status, 0) << top.output;
    EXPECT_NE(top.output.find("too many nested merge files"), std::string::npos) << top.output;
    // The same fan-out as a per-directory file (one level less deep: it is level 0 itself).
    std::filesystem::copy_file(dir / "mod/L0", dir / "mod/.rules");
    auto per_dir = pull("-M--filter=:_.rules", "out2");
    EXPECT_NE(per_dir.status, 0) << per_dir.output;
    EXPECT_NE(per_dir.output.find("too many nested merge files"), std::string::npos) << per_dir.output;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

}  // namespace
}  // namespace sfs::test
