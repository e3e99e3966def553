// End to end: mount options of the replicator (sync, exclude=, several mirror=) and a
// `git checkout` of another branch on the mount.
#include <gtest/gtest.h>

#include "tests/replicator/e2e_harness.h"

namespace sfs::e2e {
namespace {

TEST(E2eOptions, SyncFsyncReturnsOnlyWhenTheMirrorHasTheData) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "sync");
    ASSERT_EQ(mount.wait().status, 0);  // the initial reconcile
    for (int i = 0; i < 5; ++i) {
        const std::string f = "/f" + std::to_string(i);
        ASSERT_EQ(sh("dd if=/dev/urandom of=" + env.mnt + f + " bs=64k count=4 conv=fsync status=none").status, 0);
        // No syncfsctl wait: fsync's return alone guarantees the mirror copy.
        EXPECT_EQ(sh("cmp " + env.src + f + " " + env.mirror + f).status, 0) << i;
    }
}

TEST(E2eOptions, ExcludedPathsNeverReachTheMirror) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "exclude=*.tmp,exclude=/cache");
    ASSERT_EQ(sh("mkdir -p " + env.mnt + "/cache/x " + env.mnt + "/d && echo a > " + env.mnt + "/d/a.tmp && echo b > " +
                 env.mnt + "/d/b.txt && echo c > " + env.mnt + "/cache/x/c && echo e > " + env.mnt + "/d/e.tmp && mv " +
                 env.mnt + "/d/e.tmp " + env.mnt + "/d/e.txt")
                  .status,
              0);
    auto w = mount.wait();
    ASSERT_EQ(w.status, 0) << w.output;
    EXPECT_TRUE(stdfs::exists(env.mirror + "/d/b.txt"));
    EXPECT_TRUE(stdfs::exists(env.mirror + "/d/e.txt"));  // renamed into view: sent by reconcile
    EXPECT_FALSE(stdfs::exists(env.mirror + "/d/a.tmp"));
    EXPECT_FALSE(stdfs::exists(env.mirror + "/cache"));
    EXPECT_EQ(sh("rsync -aHAXnc --delete --exclude='*.tmp' --exclude=/cache -i " + env.src + "/ " + env.mirror + "/")
                  .output,
              "");
}

TEST(E2eOptions, TwoMirrorsEachConverge) {
    Env env, env2;
    Syncfsd daemon(env), daemon2(env2);
    Mount mount(env, "mirror=" + env2.url());
    ASSERT_EQ(sh("cp -a /usr/include/linux/netfilter " + env.mnt + "/nf && mv " + env.mnt + "/nf " + env.mnt + "/nf2")
                  .status,
              0);
    daemon2.kill9();  // one mirror down does not hold the other back
    ASSERT_EQ(sh("echo late > " + env.mnt + "/late").status, 0);
    daemon2.start();
    auto w = mount.wait();
    ASSERT_EQ(w.status, 0) << w.output;
    EXPECT_EQ(env.diff(), "");
    EXPECT_EQ(sh("rsync -aHAXnc --delete -i " + env.src + "/ " + env2.mirror + "/").output, "");
}

TEST(E2eOptions, GitCheckoutOfAnotherBranchConverges) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    const std::string git = "cd " + env.mnt + "/repo && git -c user.email=t@t -c user.name=t ";
    ASSERT_EQ(sh("mkdir " + env.mnt + "/repo && cd " + env.mnt + "/repo && git init -q -b main . && cp -a /usr/include/linux/*.h .")
                  .status,
              0);
    ASSERT_EQ(sh(git + "add -A && " + git + "commit -qm one && " + git + "checkout -qb other && rm -f a*.h && echo x >> input.h && " +
                 git + "commit -qam two && " + git + "checkout -q main")
                  .status,
              0);
    auto w = mount.wait();
    ASSERT_EQ(w.status, 0) << w.output;
    EXPECT_EQ(env.diff(), "");
}

}  // namespace
}  // namespace sfs::e2e
