// End to end: what crosses the wire (MirrorLink's byte counter, shown by syncfsctl status).
#include <gtest/gtest.h>

#include "tests/replicator/e2e_harness.h"

namespace sfs::e2e {
namespace {

TEST(E2eBytes, DirectoryRenameOfAThousandFilesSendsUnder64KiB) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    ASSERT_EQ(sh("mkdir " + env.mnt + "/d && cd " + env.mnt +
                 "/d && for i in $(seq 1000); do head -c 4096 /dev/urandom > f$i; done")
                  .status,
              0);
    ASSERT_EQ(mount.wait().status, 0);
    const std::uint64_t before = mount.bytes_sent();
    ASSERT_EQ(sh("mv " + env.mnt + "/d " + env.mnt + "/renamed").status, 0);
    ASSERT_EQ(mount.wait().status, 0);
    const std::uint64_t sent = mount.bytes_sent() - before;
    EXPECT_LT(sent, 64u * 1024) << sent;
    EXPECT_EQ(env.diff(), "");
}

TEST(E2eBytes, FourKiBWriteIntoAOneGiBFileSendsUnder64KiB) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    ASSERT_EQ(sh("truncate -s 1G " + env.mnt + "/big").status, 0);
    ASSERT_EQ(mount.wait().status, 0);
    const std::uint64_t before = mount.bytes_sent();
    ASSERT_EQ(sh("dd if=/dev/urandom of=" + env.mnt + "/big bs=4k count=1 seek=100000 conv=notrunc status=none").status, 0);
    ASSERT_EQ(mount.wait().status, 0);
    const std::uint64_t sent = mount.bytes_sent() - before;
    EXPECT_LT(sent, 64u * 1024) << sent;
    EXPECT_EQ(sh("cmp " + env.src + "/big " + env.mirror + "/big").status, 0);
}

}  // namespace
}  // namespace sfs::e2e
