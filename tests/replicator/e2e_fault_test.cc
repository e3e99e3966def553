// End to end, with faults: syncfs killed, syncfsd killed, the mirror's disk full, a network
// partition. Each ends
// converged with nothing lost and the error visible in the logs and status.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>

#include <cstring>

#include <thread>

#include "tests/replicator/e2e_harness.h"
#include "tests/support/eventually.h"

namespace sfs::e2e {
namespace {

void workload(const std::string& m, int from, int to) {
    for (int i = from; i < to; ++i) {
        const std::string d = m + "/w" + std::to_string(i % 7);
        ::mkdir(d.c_str(), 0755);
        write_file(d + "/f" + std::to_string(i), std::string(1000 + i * 37 % 9000, static_cast<char>('a' + i % 26)));
        if (i % 5 == 0) ::rename((d + "/f" + std::to_string(i)).c_str(), (d + "/g" + std::to_string(i)).c_str());
        if (i % 11 == 0) ::unlink((d + "/f" + std::to_string(i - 1)).c_str());
    }
}

TEST(E2eFault, KillNineOfSyncfsMidWorkloadThenRemountConverges) {
    Env env;
    Syncfsd daemon(env);
    {
        Mount mount(env);
        std::thread writer([&] { workload(env.mnt, 0, 400); });
        std::this_thread::sleep_for(300ms);
        mount.kill9();  // the writer's remaining ops fail on the dead mount
        writer.join();
    }
    ASSERT_FALSE(stdfs::exists(env.state + "/clean"));
    Mount again(env);
    workload(env.mnt, 400, 450);
    auto w = again.wait();
    EXPECT_EQ(w.status, 0) << w.output << again.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(again.log().find("not clean"), std::string::npos);
}

TEST(E2eFault, KillAndRestartOfSyncfsdMidWorkloadConverges) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    std::thread writer([&] { workload(env.mnt, 0, 600); });
    for (int i = 0; i < 3; ++i) {
        std::this_thread::sleep_for(200ms);
        daemon.kill9();
        std::this_thread::sleep_for(300ms);
        daemon.start();
    }
    writer.join();
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(mount.status_json().find("\"reconnects\": "), std::string::npos);
}

TEST(E2eFault, FullMirrorDiskIsReportedAndConvergesAfterSpaceIsFreed) {
    char tmpl[] = "/tmp/syncfs-e2e-tmpfs.XXXXXX";
    const std::string small = ::mkdtemp(tmpl);
    ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=2m"), 0) << std::strerror(errno);
    {
        Env env(small + "/mirror");
        Syncfsd daemon(env);
        Mount mount(env);
        ASSERT_EQ(sh("head -c 1500000 /dev/zero > " + small + "/filler").status, 0);
        ASSERT_EQ(sh("head -c 1000000 /dev/urandom > " + env.mnt + "/big").status, 0);
        auto w = mount.wait(3);
        EXPECT_EQ(w.status, 1) << w.output;
        EXPECT_NE(w.output.find("No space left on device"), std::string::npos) << w.output;
        EXPECT_NE(mount.status_json().find("No space left on device"), std::string::npos) << mount.status_json();
        EXPECT_NE(mount.log().find("No space left on device"), std::string::npos);
        ASSERT_EQ(::unlink((small + "/filler").c_str()), 0);
        auto w2 = mount.wait(120);
        EXPECT_EQ(w2.status, 0) << w2.output;
        EXPECT_EQ(env.diff(), "");
    }
    ::umount2(small.c_str(), MNT_DETACH);
    ::rmdir(small.c_str());
}

// A mirror down while the writers go on must not fill the disk of the state dir (then the
// journal could take no records and writes through the mount would wait). Past
// journal_max the oldest records go unsent and the mirror is reconciled in full when it
// is back: while the mount runs (its sender finds the records gone) and after a remount
// (its cursor is older than the journal).
TEST(E2eFault, JournalOverItsCapDropsTheBacklogAndTheMirrorIsReconciled) {
    Env env;
    Syncfsd daemon(env);
    const auto fill = [&](const std::string& dir, int n) {
        ::mkdir((env.mnt + "/" + dir).c_str(), 0755);
        for (int i = 0; i < n; ++i) {
            const std::string f = env.mnt + "/" + dir + "/a-file-with-a-rather-long-name-" + std::to_string(i);
            write_file(f, std::to_string(i));
            ::chmod(f.c_str(), 0600 + i % 2 * 040);
        }
    };
    const auto journal_bytes = [](const Mount& m) {
        const std::string v = status_field(m, "bytes");
        return v.empty() ? ~0ull : std::stoull(v);
    };
    {
        Mount mount(env, "journal_max=256K");
        write_file(env.mnt + "/kept", "before\n");
        write_file(env.mnt + "/renamed", "to be renamed\n");
        write_file(env.mnt + "/deleted", "to be deleted\n");
        ASSERT_EQ(mount.wait().status, 0) << mount.log();
        EXPECT_EQ(status_field(mount, "max"), "262144");
        const std::string text = sh(std::string(SYNCFSCTL) + " status " + env.mnt).output;
        EXPECT_NE(text.find("bytes on disk (cap journal_max=256K)"), std::string::npos) << text;

        daemon.kill9();
        fill("down1", 3000);
        ASSERT_EQ(::rename((env.mnt + "/renamed").c_str(), (env.mnt + "/now-renamed").c_str()), 0);
        ASSERT_EQ(::unlink((env.mnt + "/deleted").c_str()), 0);
        // The cap holds (trimming runs every 200 ms; the active segment is a quarter of it).
        EXPECT_TRUE(testsupport::eventually([&] { return journal_bytes(mount) <= 320u << 10; }))
            << mount.status_json();
        EXPECT_NE(mount.log().find("outgrew journal_max=262144"), std::string::npos) << mount.log();

        daemon.start();
        auto w = mount.wait(120);
        EXPECT_EQ(w.status, 0) << w.output << mount.log();
        EXPECT_EQ(env.diff(), "");
        EXPECT_NE(mount.log().find("reconciling the whole tree"), std::string::npos) << mount.log();

        daemon.kill9();
        fill("down2", 3000);
        EXPECT_TRUE(testsupport::eventually([&] { return journal_bytes(mount) <= 320u << 10; }))
            << mount.status_json();
    }  // unmounted with the mirror down: the backlog it still needs is gone
    daemon.start();
    Mount again(env, "journal_max=256K");
    auto w = again.wait(120);
    EXPECT_EQ(w.status, 0) << w.output << again.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_NE(again.log().find("is older than the journal"), std::string::npos) << again.log();
}

// The state dir's own disk full (journal_max too large for it, or other files filled it):
// the journal cannot be written. Its flusher moves the pending batch to a segment of its
// own and the older segments, which only a mirror that is down still needed, are deleted
// to free the space; that mirror is reconciled in full when it is back. Without this the
// records would wait in memory until the buffer filled and then stall the mount.
TEST(E2eFault, FullStateDirFreesTheBacklogAndTheMirrorIsReconciled) {
    Env env;
    stdfs::create_directories(env.state);
    ASSERT_EQ(::mount("tmpfs", env.state.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
    struct Unmount {
        std::string dir;
        ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
    } unmount{env.state};
    Syncfsd daemon(env);
    {
        Mount mount(env, "journal_max=0");
        write_file(env.mnt + "/first", "before\n");
        ASSERT_EQ(mount.wait().status, 0) << mount.log();
        daemon.kill9();
        ::mkdir((env.mnt + "/down").c_str(), 0755);
        for (int i = 0; i < 6000; ++i) {
            write_file(env.mnt + "/down/a-file-with-a-rather-long-name-" + std::to_string(i), std::to_string(i));
        }
        EXPECT_TRUE(testsupport::eventually([&] { return mount.log().find("is full; records") != std::string::npos; }))
            << mount.log();
        daemon.start();
        auto w = mount.wait(120);
        EXPECT_EQ(w.status, 0) << w.output << mount.log();
        EXPECT_EQ(env.diff(), "");
        // The disk stays nearly full, so a later batch may fail once more before the
        // segments it displaces are deleted: the error clears when the retry succeeds.
        EXPECT_TRUE(testsupport::eventually([&] { return status_field(mount, "error").empty(); }))
            << mount.status_json();
    }
}

// A network partition: the test moves itself (and so the daemon and the mount it starts) into
// a network namespace of its own and takes its loopback down mid-workload, so packets vanish
// and nothing is closed. The mount keeps working; the replicator declares the silent
// connection dead after mirror_timeout and shows it in status; when the network is back it
// reconnects and everything converges.
TEST(E2eFault, NetworkPartitionIsNoticedAndHealsWithNothingLost) {
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    ASSERT_EQ(sh("ip link set lo up").status, 0);
    Env env;
    Syncfsd daemon(env);
    Mount mount(env, "mirror_timeout=2");
    workload(env.mnt, 0, 100);
    auto w = mount.wait(60);
    ASSERT_EQ(w.status, 0) << w.output << mount.log();

    ASSERT_EQ(sh("ip link set lo down").status, 0);
    workload(env.mnt, 100, 300);  // through the mount: never waits for the mirror
    write_file(env.mnt + "/big", std::string(4 << 20, 'p'));
    std::string status;
    for (int i = 0; i < 300; ++i) {
        status = mount.status_json();
        if (status.find("\"connected\": false") != std::string::npos) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_NE(status.find("\"connected\": false"), std::string::npos)
        << "the dead connection was not noticed:\n" << status;
    EXPECT_NE(status.find("timed out"), std::string::npos) << status << mount.log() << daemon.log();
    EXPECT_EQ(mount.wait(1).status, 1);

    ASSERT_EQ(sh("ip link set lo up").status, 0);
    workload(env.mnt, 300, 350);
    w = mount.wait(60);
    EXPECT_EQ(w.status, 0) << w.output << mount.log() << daemon.log();
    EXPECT_EQ(env.diff(), "");
    // syncfsd's side of the old connection ends either by the client kernel's RST to a
    // retransmission after the heal or by being superseded by the new connection
    // (NativeSyncfsd.NewConnectionOfAStreamSupersedesAHalfOpenOne), whichever comes first;
    // either way cleanly.
    EXPECT_EQ(daemon.log().find("killed by signal"), std::string::npos) << daemon.log();
}

}  // namespace
}  // namespace sfs::e2e
