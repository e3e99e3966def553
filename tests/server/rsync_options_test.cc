// The --server argument parser and the exclude-list subset.
#include <gtest/gtest.h>

#include "protocol/rsync_wire.h"
#include "server/rsync/filter.h"
#include "server/rsync/options.h"

namespace sfs::server::rsync {
namespace {

TEST(RsyncOptions, ParsesWhatRsyncSends) {
    auto o = parse_server_args({"--server", "--sender", "-vnlHogDtprcz", "--delete", "--inplace",
                                "--compress-level=9", "-B4096", "--max-delete=5", ".", "web/sub"});
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_TRUE(o->sender);
    EXPECT_EQ(o->verbose, 1);
    EXPECT_TRUE(o->dry_run && o->links && o->hard_links && o->owner && o->group && o->devices && o->specials);
    EXPECT_TRUE(o->times && o->perms && o->recurse && o->checksum && o->compress);
    EXPECT_TRUE(o->delete_mode && o->inplace);
    EXPECT_EQ(o->compress_level, 9);
    EXPECT_EQ(o->block_size, 4096);
    EXPECT_EQ(o->max_delete, 5);
    ASSERT_EQ(o->paths.size(), 1u);
    EXPECT_EQ(o->paths[0], "web/sub");
    // -e.<info> ends the flag cluster (protocol >= 30 clients).
    auto e = parse_server_args({"--server", "-logDtpre.iLsfxC", ".", "web/"});
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_TRUE(e->recurse);
}

TEST(RsyncOptions, RefusesWhatWeDoNotImplement) {
    for (auto bad : std::vector<std::vector<std::string>>{
             {"--server", "-y", ".", "x"},
             {"--server", "-R", ".", "x"},
             {"--server", "--link-dest=/x", ".", "x"},
             {"--server", "--backup-dir", "."},  // the directory argument is missing
             {"--server", "-b", "--suffix=", ".", "x"},  // empty suffix without a backup dir
             {"--server", "--suffix=a/b", ".", "x"},
             {"--server", "--remove-source-files", ".", "x"},
             {"--server", "--partial-dir=.p", ".", "x"},
             {"--server", "-B0", ".", "x"},
             {"-r", ".", "x"},                 // no --server
             {"--server", "-r"}}) {            // no "."
        auto o = parse_server_args(bad);
        EXPECT_FALSE(o) << bad[1];
    }
    auto o = parse_server_args({"--server", "-y", ".", "x"});
    EXPECT_NE(o.error().message.find("-y is not supported"), std::string::npos);
}

TEST(RsyncOptions, BackupOptions) {
    auto b = parse_server_args({"--server", "-logDtprb", ".", "x"});
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_TRUE(b->backup);
    EXPECT_EQ(b->suffix, "~");
    auto d = parse_server_args({"--server", "-r", "--backup-dir", "old", "--suffix=.bak", ".", "x"});
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_TRUE(d->backup);
    EXPECT_EQ(d->backup_dir, "old");
    EXPECT_EQ(d->suffix, ".bak");
    EXPECT_EQ(d->paths, std::vector<std::string>{"x"});
    auto e = parse_server_args({"--server", "-r", "--backup-dir=old", ".", "x"});
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(e->suffix, "");
}

TEST(RsyncFilter, OldStylePrefixesAndPatterns) {
    FilterList f;
    f.add("+ keep.log");
    f.add("- *.log");
    f.add("/top-only");
    f.add("cache/");
    f.add("a/*/c");
    f.add("deep/**/x");
    EXPECT_FALSE(f.excluded("keep.log", false));
    EXPECT_TRUE(f.excluded("sub/other.log", false));
    EXPECT_TRUE(f.excluded("top-only", false));
    EXPECT_FALSE(f.excluded("sub/top-only", false));
    EXPECT_TRUE(f.excluded("x/cache", true));
    EXPECT_FALSE(f.excluded("x/cache", false));   // dir-only rule
    EXPECT_TRUE(f.excluded("a/b/c", false));
    EXPECT_TRUE(f.excluded("z/a/b/c", false));    // unanchored: any tail
    EXPECT_FALSE(f.excluded("a/b/d/c", false));   // '*' does not cross '/'
    EXPECT_TRUE(f.excluded("deep/1/2/x", false));
    f.add("!");
    EXPECT_FALSE(f.excluded("sub/other.log", false));
}

TEST(RsyncFilter, ReceivedListIsBounded) {
    std::string wire;
    protocol::put_i32(wire, 5000);   // longer than a rule may be
    wire += std::string(5000, 'x');
    protocol::SpanReader in(wire);
    FilterList f;
    EXPECT_FALSE(f.receive(in));
    std::string ok;
    protocol::put_i32(ok, 5);
    ok += "- *.o";
    protocol::put_i32(ok, 0);
    protocol::SpanReader in2(ok);
    FilterList g;
    ASSERT_TRUE(g.receive(in2));
    EXPECT_TRUE(g.excluded("x/y.o", false));
}

}  // namespace
}  // namespace sfs::server::rsync
