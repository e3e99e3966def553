// Parsing of `syncfs SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]`.
#include <gtest/gtest.h>

#include <vector>

#include "fs/mount_options.h"

namespace sfs::fs {
namespace {

Result<MountOptions> parse(std::vector<const char*> args) {
    args.insert(args.begin(), "syncfs");
    return parse_command_line(static_cast<int>(args.size()), args.data());
}

TEST(MountOptions, AllDocumentedOptions) {
    auto o = parse({"/data", "/web", "-f", "-o",
                    "mirror=rsync://a/web;rsync://u@b:8873/web,mirror=rsync://c/m,secrets=/etc/s,state=/var/x,sync,"
                    "delay=250,mirror_timeout=7,journal_max=2G,exclude=*.tmp,exclude=cache/,log=/var/log/s.log,max_fds=1000,allow_other,"
                    "default_permissions,ro,noatime,_netdev,nodev,nosuid,timeout=2.5,threads=4"});
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->source, "/data");
    EXPECT_EQ(o->mountpoint, "/web");
    EXPECT_TRUE(o->foreground);
    EXPECT_EQ(o->mirrors, (std::vector<std::string>{"rsync://a/web", "rsync://u@b:8873/web", "rsync://c/m"}));
    EXPECT_EQ(o->secrets, "/etc/s");
    EXPECT_EQ(o->state, "/var/x");
    EXPECT_TRUE(o->sync);
    EXPECT_EQ(o->delay_ms, 250u);
    EXPECT_EQ(o->mirror_timeout_s, 7u);
    EXPECT_EQ(o->journal_max, 2ull << 30);
    EXPECT_EQ(o->excludes, (std::vector<std::string>{"*.tmp", "cache/"}));
    EXPECT_EQ(o->log_file, "/var/log/s.log");
    EXPECT_EQ(o->max_fds, 1000u);
    EXPECT_DOUBLE_EQ(o->timeout, 2.5);
    EXPECT_EQ(o->max_threads, 4u);
    EXPECT_TRUE(o->allow_other);
    EXPECT_TRUE(o->default_permissions);
    EXPECT_TRUE(o->read_only);
    EXPECT_TRUE(o->noatime);
    EXPECT_EQ(o->fuse_options,
              (std::vector<std::string>{"allow_other", "default_permissions", "ro", "noatime", "nodev", "nosuid"}));
}

TEST(MountOptions, OptionsBeforePositionalsAndJoinedForm) {
    auto o = parse({"-d", "-oro", "/a", "/b"});
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_TRUE(o->debug);
    EXPECT_TRUE(o->foreground);
    EXPECT_TRUE(o->read_only);
    EXPECT_EQ(o->source, "/a");
}

TEST(MountOptions, JournalMaxSizes) {
    for (auto [text, bytes] : {std::pair{"0", 0ull}, {"512K", 512ull << 10}, {"300m", 300ull << 20},
                               {"1073741824", 1ull << 30}}) {
        auto o = parse({"/a", "/b", "-o", (std::string("journal_max=") + text).c_str()});
        ASSERT_TRUE(o) << text << ": " << o.error().message;
        EXPECT_EQ(o->journal_max, bytes) << text;
    }
    EXPECT_EQ(parse({"/a", "/b"})->journal_max, 1ull << 30);  // the default: 1 GiB
}

TEST(MountOptions, EscapedComma) {
    auto o = parse({"/a", "/b", "-o", "exclude=a\\,b"});
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->excludes, (std::vector<std::string>{"a,b"}));
}

TEST(MountOptions, Errors) {
    struct Case {
        std::vector<const char*> args;
        const char* message;
    };
    std::vector<Case> cases = {
        {{"/a", "/b", "-o", "bogus"}, "unknown option 'bogus'"},
        {{"/a", "/b", "-o", "max_fds=abc"}, "max_fds=abc: not a valid number"},
        {{"/a", "/b", "-o", "max_fds=30000"}, "max_fds=30000: must be between 64 and 19000"},
        {{"/a", "/b", "-o", "mirror_timeout=0"}, "mirror_timeout=0: must be between 1 and 86400 seconds"},
        {{"/a", "/b", "-o", "journal_max=100K"}, "journal_max=100K: must be 0 (no cap) or at least 256K"},
        {{"/a", "/b", "-o", "journal_max=1T"}, "journal_max=1T: not a valid size (a number with K, M or G)"},
        {{"/a", "/b", "-o", "journal_max=99999999999G"}, "journal_max=99999999999G: not a valid size (a number with K, M or G)"},
        {{"/a", "/b", "-o", "delay="}, "option 'delay' needs a value"},
        {{"/a", "/b", "-o", "sync=1"}, "option 'sync' takes no value"},
        {{"/a", "/b", "-o", "mirror=http://x"}, "mirror=http://x: expected rsync://[user@]host[:port]/module"},
        {{"/a", "/b", "-o", "fsname=x"}, "option 'fsname' is set by syncfs itself"},
        {{"/a", "/b", "-o"}, "option '-o' needs an argument"},
        {{"/a", "/b", "-x"}, "unknown option '-x'"},
        {{"/a"}, "missing MOUNTPOINT"},
        {{}, "missing SOURCE and MOUNTPOINT"},
        {{"/a", "/b", "/c"}, "unexpected argument '/c'"},
    };
    for (const auto& c : cases) {
        auto o = parse(c.args);
        ASSERT_FALSE(o) << c.message;
        EXPECT_EQ(o.error().message, c.message);
    }
}

}  // namespace
}  // namespace sfs::fs
