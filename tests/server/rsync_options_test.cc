// The --server argument parser and the exclude-list subset.
#include <gtest/gtest.h>

#include <map>

#include "protocol/rsync_wire.h"
#include "server/rsync/chmod_spec.h"
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
             {"--server", "-X", ".", "x"},
             {"--server", "--link-dest=a", "--compare-dest=b", ".", "x"},  // one kind per transfer
             {"--server", "--link-dest", "."},   // the directory argument is missing
             {"--server", "--backup-dir", "."},  // the directory argument is missing
             {"--server", "-b", "--suffix=", ".", "x"},  // empty suffix without a backup dir
             {"--server", "--suffix=a/b", ".", "x"},
             {"--server", "--append", ".", "x"},
             {"--server", "--inplace", "--partial-dir=.p", ".", "x"},
             {"--server", "-B0", ".", "x"},
             {"-r", ".", "x"},                 // no --server
             {"--server", "-r"}}) {            // no "."
        auto o = parse_server_args(bad);
        EXPECT_FALSE(o) << bad[1];
    }
    auto o = parse_server_args({"--server", "-y", ".", "x"});
    EXPECT_NE(o.error().message.find("-y is not supported"), std::string::npos);
}

TEST(RsyncOptions, OperatorOptions) {
    // As options.c server_options() sends them: the directory as the next argument.
    auto l = parse_server_args({"--server", "-logDtpre.iLsfxC", "--link-dest", "../01", "--link-dest", "/snap", ".", "x"});
    ASSERT_TRUE(l) << l.error().message;
    EXPECT_EQ(l->alt_dest, ServerOptions::AltDest::link);
    EXPECT_EQ(l->basis_dirs, (std::vector<std::string>{"../01", "/snap"}));
    auto p = parse_server_args({"--server", "-r", "--partial-dir", ".rsync-partial", "--delay-updates",
                                "--temp-dir", "tmp", "--remove-source-files", ".", "x"});
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->partial_dir, ".rsync-partial");
    EXPECT_TRUE(p->partial);
    EXPECT_TRUE(p->delay_updates);
    EXPECT_EQ(p->temp_dir, "tmp");
    EXPECT_EQ(p->remove_source, 1);
    auto d = parse_server_args({"--server", "-r", "--delay-updates", ".", "x"});
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->partial_dir, ".~tmp~");
    auto r = parse_server_args({"--server", "--sender", "-lr", "--files-from=-", "--from0", ".", "m/"});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(r->files_from_input);
    EXPECT_TRUE(r->relative);   // --files-from implies -R
    auto n = parse_server_args({"--server", "--sender", "-lr", "--files-from=-", "--from0", "--no-relative", ".", "m/"});
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_FALSE(n->relative);
    auto i = parse_server_args({"--server", "-lrR", "--no-implied-dirs", ".", "m/"});
    ASSERT_TRUE(i) << i.error().message;
    EXPECT_TRUE(i->relative);
    EXPECT_FALSE(i->implied_dirs);
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

// The full rule syntax of --filter options (exclude.c parse_rule_tok) with merge files
// served from memory: sides, long names, modifiers, nested merges and their errors.
TEST(RsyncFilter, FilterOptionSyntaxSidesAndMergeFiles) {
    std::map<std::string, std::string> files = {
        {"rules", "# comment\n- *.o\ninclude keep.tmp\nmerge more\n"},
        {"more", "exclude,! *.c\n"},   // negated: excludes everything that is not *.c
        {"words", "a.x b.x\n c.x\n"},
        {"loop", ". loop\n"},
    };
    MergeReader read = [&files](const std::string& path) -> Result<MergeFile> {
        MergeFile f;
        if (path == "hidden") {
            f.state = MergeFile::State::hidden;
            return f;
        }
        auto it = files.find(path);
        if (it == files.end()) {
            f.error = ENOENT;
            return f;
        }
        f.state = MergeFile::State::ok;
        f.text = it->second;
        return f;
    };
    FilterList snd(FilterRole::sender);
    ASSERT_TRUE(snd.add_arg("H secret*", 0, false, read));
    ASSERT_TRUE(snd.add_arg("P protected*", 0, false, read));
    ASSERT_TRUE(snd.add_arg("+ keep.o", 0, false, read));
    ASSERT_TRUE(snd.add_arg("._/./rules", 0, false, read));
    EXPECT_TRUE(snd.excluded("secret.txt", false));    // hide: sender side
    EXPECT_FALSE(snd.excluded("protected.c", false));   // protect: receiver side only
    EXPECT_FALSE(snd.excluded("keep.o", false));
    EXPECT_TRUE(snd.excluded("x/y.o", false));
    EXPECT_FALSE(snd.excluded("keep.tmp", false));
    EXPECT_FALSE(snd.excluded("src.c", false));         // "! *.c" does not match *.c
    EXPECT_TRUE(snd.excluded("README", false));         // ... and matches the rest

    FilterList rcv(FilterRole::receiver);
    ASSERT_TRUE(rcv.add_arg("hide secret*", 0, false, read));
    ASSERT_TRUE(rcv.add_arg("protect protected*", 0, false, read));
    ASSERT_TRUE(rcv.add_arg("-s sender-only", 0, false, read));
    ASSERT_TRUE(rcv.add_arg(".-w words", 0, false, read));
    EXPECT_FALSE(rcv.excluded("secret.txt", false));
    EXPECT_TRUE(rcv.excluded("protected.txt", false));
    EXPECT_FALSE(rcv.excluded("sender-only", false));
    EXPECT_TRUE(rcv.excluded("b.x", false));
    EXPECT_TRUE(rcv.excluded("c.x", false));
    ASSERT_TRUE(rcv.add_arg(":n .rules", 0, false, read));
    ASSERT_EQ(rcv.dir_merges().size(), 1u);
    EXPECT_TRUE(rcv.dir_merges()[0].no_inherit);

    FilterList e;
    EXPECT_TRUE(e.add_arg("._hidden", 0, false, read));   // hidden: silently absent
    auto missing = e.add_arg("._nope", 0, false, read);
    ASSERT_FALSE(missing);
    EXPECT_NE(missing.error().message.find("failed to open merge file nope"), std::string::npos);
    auto unknown = e.add_arg("Z pat", 0, false, read);
    ASSERT_FALSE(unknown);
    EXPECT_NE(unknown.error().message.find("Unknown filter rule"), std::string::npos);
    for (const char* refused : {"-/ abs", "-x attr", ":C", ": dir/name", "!junk", "clear x", "-e pat", "-"}) {
        auto r = e.add_arg(refused, 0, false, read);
        EXPECT_FALSE(r) << refused;
    }
    auto loop = e.add_arg(". loop", 0, false, read);
    ASSERT_FALSE(loop);
    EXPECT_NE(loop.error().message.find("depth limit"), std::string::npos) << loop.error().message;
    // Distinct dir-merge names are bounded (each one is looked up in every directory).
    FilterList many;
    for (int i = 0; i < 32; ++i) ASSERT_TRUE(many.add_arg(": m" + std::to_string(i), 0, false, read));
    ASSERT_TRUE(many.add_arg(": m0", 0, false, read));   // a name already active is not added again
    EXPECT_FALSE(many.add_arg(": m32", 0, false, read));
    // --exclude-from of a hidden file refuses the options.
    auto xf = e.add_arg("hidden", '-', true, read);
    ASSERT_FALSE(xf);
    EXPECT_NE(xf.error().message.find("rejected by the server"), std::string::npos);
}

}  // namespace
}  // namespace sfs::server::rsync

namespace sfs::server::rsync {
namespace {

// `incoming chmod` / `outgoing chmod` use rsync's --chmod rules (chmod.c).
TEST(RsyncChmodSpec, RulesAsRsyncApplies) {
    auto f600 = ChmodSpec::parse("F600", 022);
    ASSERT_TRUE(f600);
    EXPECT_EQ(f600->apply(0100644), 0100600u);
    EXPECT_EQ(f600->apply(040755), 040755u) << "F clauses skip directories";

    auto out = ChmodSpec::parse("Fg-r,Fo-r", 022);
    ASSERT_TRUE(out);
    EXPECT_EQ(out->apply(0100644), 0100600u);

    auto x = ChmodSpec::parse("+X", 022);   // no who: masked by the umask
    ASSERT_TRUE(x);
    EXPECT_EQ(x->apply(0100644), 0100644u) << "X adds x only where some x is set";
    EXPECT_EQ(x->apply(0100744), 0100755u);
    EXPECT_EQ(x->apply(040700), 040711u);

    auto mix = ChmodSpec::parse("ug-s,a+rX,D+w", 002);
    ASSERT_TRUE(mix);
    EXPECT_EQ(mix->apply(0104700), 0100755u);
    EXPECT_EQ(mix->apply(040700), 040775u);

    auto copy = ChmodSpec::parse("g=u", 022);
    ASSERT_TRUE(copy);
    EXPECT_EQ(copy->apply(0100640), 0100660u);

    auto dset = ChmodSpec::parse("D2775,F664", 022);
    ASSERT_TRUE(dset);
    EXPECT_EQ(dset->apply(040700), 042775u);
    EXPECT_EQ(dset->apply(0100600), 0100664u);

    for (const char* bad : {"", "g=ur", "Q+x", "DF+x", "u+y", "9", "a+r,"})
        EXPECT_FALSE(ChmodSpec::parse(bad, 022)) << bad;
}

}  // namespace
}  // namespace sfs::server::rsync
