// End to end: a real syncfs mount replicating to a real syncfsd on 127.0.0.1. Every test
// ends with `syncfsctl wait` and rsync's verdict that the mirror equals SOURCE.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <random>

#include "tests/replicator/e2e_harness.h"

namespace sfs::e2e {
namespace {

TEST(E2eBasic, CopyUntarRenameLinkChmodTruncateSparseXattrDelete) {
    Env env;
    // Something on both sides before the mount: the initial reconcile fixes the mirror.
    stdfs::create_directories(env.src + "/old/dir");
    write_file(env.src + "/old/dir/keep", "keep me");
    write_file(env.mirror + "/stale", "only on the mirror: deleted");
    Syncfsd daemon(env);
    Mount mount(env);
    const std::string m = env.mnt;
    // A tree copied in, and an untarred archive.
    ASSERT_EQ(sh("cp -a /usr/include/linux " + m + "/linux").status, 0);
    ASSERT_EQ(sh("tar -C /usr/include -cf " + env.root + "/a.tar net netinet").status, 0);
    ASSERT_EQ(sh("mkdir " + m + "/untar && tar -C " + m + "/untar -xf " + env.root + "/a.tar").status, 0);
    // Renames of files and directories, hardlinks, symlinks.
    ASSERT_EQ(sh("mv " + m + "/linux/netfilter " + m + "/netfilter-moved").status, 0);
    ASSERT_EQ(sh("mv " + m + "/linux/fs.h " + m + "/untar/fs-renamed.h").status, 0);
    ASSERT_EQ(sh("ln " + m + "/untar/fs-renamed.h " + m + "/hardlink.h").status, 0);
    ASSERT_EQ(sh("ln -s untar/net " + m + "/symlink-dir && ln -s /etc/hostname " + m + "/abs-link").status, 0);
    // Attributes.
    ASSERT_EQ(sh("chmod 0600 " + m + "/hardlink.h && chown 1234:5678 " + m + "/untar/net && touch -d '2001-02-03 04:05:06' " + m +
                 "/linux/input.h")
                  .status,
              0);
    // Truncate, sparse file, xattrs.
    ASSERT_EQ(sh("truncate -s 100 " + m + "/linux/input.h && touch -d '2002-01-01' " + m + "/linux/input.h").status, 0);
    ASSERT_EQ(sh("truncate -s 20M " + m + "/sparse && dd if=/dev/urandom of=" + m +
                 "/sparse bs=4k count=2 seek=1000 conv=notrunc status=none")
                  .status,
              0);
    ASSERT_EQ(sh("setfattr -n user.color -v blue " + m + "/sparse && setfattr -n user.gone -v x " + m +
                 "/sparse && setfattr -x user.gone " + m + "/sparse")
                  .status,
              0);
    // Deleting trees.
    ASSERT_EQ(sh("rm -rf " + m + "/linux/usb " + m + "/old").status, 0);
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_EQ(sh("cd " + env.mirror + " && getfattr -n user.color --only-values sparse").output, "blue");
}

// Extended attributes that differ on nodes whose content and times already match (set
// outside the mount, or left behind by an interrupted run): the initial reconcile compares
// the mirror's xattr digests and makes them equal, removals included, on files and directories.
TEST(E2eBasic, ReconcileMakesXattrsEqualOnFilesAndDirectories) {
    Env env;
    ASSERT_EQ(sh("mkdir " + env.src + "/d && echo same > " + env.src + "/f && cp -a " + env.src + "/d " + env.src +
                 "/f " + env.mirror + "/")
                  .status,
              0);
    ASSERT_EQ(sh("cd " + env.src + " && setfattr -n user.a -v new d && setfattr -n user.b -v 2 f && setfattr -n user.root -v r .")
                  .status,
              0);
    ASSERT_EQ(sh("cd " + env.mirror + " && setfattr -n user.a -v old d && setfattr -n user.stale -v x d && "
                 "setfattr -n user.extra -v y f")
                  .status,
              0);
    Syncfsd daemon(env);
    Mount mount(env, "watch=off");
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.log();
    EXPECT_EQ(sh("cd " + env.mirror + " && getfattr -d --absolute-names d f . 2>&1 | grep user. | sort").output,
              "user.a=\"new\"\nuser.b=\"2\"\nuser.root=\"r\"\n");
}

TEST(E2eBasic, RandomizedMixedWorkloadFromAFixedSeed) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    std::mt19937 rng(20261125);
    std::vector<std::string> dirs = {""};
    auto path = [&](const std::string& d, const std::string& n) { return env.mnt + "/" + (d.empty() ? n : d + "/" + n); };
    for (int i = 0; i < 600; ++i) {
        const std::string dir = dirs[rng() % dirs.size()];
        const std::string name = "n" + std::to_string(rng() % 50);
        const std::string p = path(dir, name);
        struct stat st;
        const bool exists = ::lstat(p.c_str(), &st) == 0;
        switch (rng() % 9) {
            case 0:
                if (!exists && dirs.size() < 30 && ::mkdir(p.c_str(), 0755) == 0) {
                    dirs.push_back(dir.empty() ? name : dir + "/" + name);
                }
                break;
            case 1:
            case 2:
                if (!exists || S_ISREG(st.st_mode)) {
                    std::ofstream f(p, std::ios::binary | std::ios::app);
                    f << std::string(rng() % 20000, static_cast<char>('a' + rng() % 26));
                }
                break;
            case 3:
                if (exists && S_ISREG(st.st_mode)) ::truncate(p.c_str(), static_cast<off_t>(rng() % 10000));
                break;
            case 4:
                if (exists && !S_ISDIR(st.st_mode)) ::unlink(p.c_str());
                break;
            case 5:
                if (exists) {
                    const std::string to = path(dirs[rng() % dirs.size()], "r" + std::to_string(rng() % 50));
                    if (::rename(p.c_str(), to.c_str()) == 0 && S_ISDIR(st.st_mode)) {
                        dirs.erase(std::remove_if(dirs.begin(), dirs.end(),
                                                  [&](const std::string& d) {
                                                      const std::string full = env.mnt + "/" + d;
                                                      return full == p || full.starts_with(p + "/");
                                                  }),
                                   dirs.end());
                        dirs.push_back(to.substr(env.mnt.size() + 1));
                    }
                }
                break;
            case 6:
                if (exists) ::chmod(p.c_str(), S_ISDIR(st.st_mode) ? 0700 + rng() % 0100 : 0600 + rng() % 0100);
                break;
            case 7:
                if (exists && S_ISREG(st.st_mode)) ::link(p.c_str(), path(dir, "h" + std::to_string(rng() % 50)).c_str());
                break;
            default:
                if (!exists) ::symlink(("t" + std::to_string(rng() % 10)).c_str(), p.c_str());
                break;
        }
    }
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "");
}

// Names are bytes: newline, tab, backslash, a leading dash, glob characters, bytes that are
// not UTF-8, 255-byte names, and a path deeper than 3000 bytes. Each is created through the
// mount, renamed, and some present before the mount (reconcile's listing), and the mirror
// must hold exactly the same names.
// What scripts/quickstart does: changes right after the mount, while the mount's first
// reconcile walks SOURCE (made long here by 5000 files the mirror lacks). Replayed after
// the walk, over a mirror that already has the newer tree, a record's op may fail (the
// rename of "docs" finds "documents" already there, or "docs" gone); that is expected,
// not an error for the operator's status.
TEST(E2eBasic, ChangesDuringTheMountsReconcileAreNotReportedAsErrors) {
    Env env;
    stdfs::create_directories(env.src + "/bulk");
    for (int i = 0; i < 5000; ++i) write_file(env.src + "/bulk/f" + std::to_string(i), std::to_string(i));
    Syncfsd daemon(env);
    Mount mount(env);
    for (int round = 0; round < 20; ++round) {
        const std::string n = std::to_string(round);
        write_file(env.mnt + "/hello" + n, "hello\n");
        ASSERT_EQ(::mkdir((env.mnt + "/docs" + n).c_str(), 0755), 0);
        write_file(env.mnt + "/docs" + n + "/readme", "nested\n");
        ASSERT_EQ(::rename((env.mnt + "/docs" + n).c_str(), (env.mnt + "/documents" + n).c_str()), 0);
        ASSERT_EQ(::rename((env.mnt + "/hello" + n).c_str(), (env.mnt + "/documents" + n + "/hello").c_str()), 0);
    }
    auto w = mount.wait(120);
    ASSERT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "");
    const std::string status = mount.status_json();
    const auto mirror = status.find("\"mirrors\"");
    ASSERT_NE(mirror, std::string::npos) << status;
    EXPECT_NE(status.find("\"errors\": \"0\"", mirror), std::string::npos) << status << mount.log();
}

TEST(E2eBasic, OddNamesAndDeepPathsReachTheMirror) {
    Env env;
    const std::vector<std::string> names = {"new\nline", "tab\there", "back\\slash", "-dash", "glob*?[x]",
                                            std::string("latin1-\xe9t\xe9"), std::string("\xff\xfe raw"),
                                            std::string(255, 'n'), "sp ace ", ".hidden", "..dots"};
    stdfs::create_directories(env.src + "/pre");
    for (const auto& n : names) write_file(env.src + "/pre/" + n, "before " + n);
    Syncfsd daemon(env);
    Mount mount(env);
    stdfs::create_directories(env.mnt + "/live");
    for (const auto& n : names) {
        write_file(env.mnt + "/live/" + n, "through the mount " + n);
        ASSERT_EQ(::mkdir((env.mnt + "/live/d" + n.substr(0, 200)).c_str(), 0755), 0) << n;
        ASSERT_EQ(::symlink(n.c_str(), (env.mnt + "/live/l" + n.substr(0, 200)).c_str()), 0) << n;
    }
    ASSERT_EQ(::rename((env.mnt + "/live/new\nline").c_str(), (env.mnt + "/live/re\nnamed").c_str()), 0);
    std::string deep = env.mnt + "/deep";
    ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0);
    for (int level = 0; deep.size() - env.mnt.size() < 3200; ++level) {
        deep += "/" + std::string(100, static_cast<char>('a' + level % 26));
        ASSERT_EQ(::mkdir(deep.c_str(), 0755), 0) << deep.size();
    }
    write_file(deep + "/leaf", "deep leaf");
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "") << mount.log();
    EXPECT_EQ(read_file(env.mirror + "/live/re\nnamed"), "through the mount new\nline");
    EXPECT_EQ(read_file(env.mirror + deep.substr(env.mnt.size()) + "/leaf"), "deep leaf");
}

// O_TMPFILE through the mount (docs/fs.md, "O_TMPFILE"): a tmpfile linked in reaches the
// mirror with its content, also when it then replaces a file (an atomic save); one never
// linked leaves no trace there.
TEST(E2eBasic, LinkedInTmpfileReachesTheMirror) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    ASSERT_EQ(::mkdir((env.mnt + "/d").c_str(), 0755), 0);
    write_file(env.mnt + "/d/config", "old content");
    std::string data;
    for (int i = 0; i < 50000; ++i) data += static_cast<char>('a' + (i * 7) % 26);
    auto tmpfile = [&](const std::string& content, const std::string& link_as) {
        int fd = ::open((env.mnt + "/d").c_str(), O_TMPFILE | O_RDWR, 0600);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
        ASSERT_EQ(::fchmod(fd, 0640), 0);
        if (!link_as.empty()) {
            const std::string proc = "/proc/self/fd/" + std::to_string(fd);
            ASSERT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (env.mnt + "/d/" + link_as).c_str(), AT_SYMLINK_FOLLOW), 0)
                << std::strerror(errno);
        }
        ASSERT_EQ(::close(fd), 0);
    };
    tmpfile(data, "linked");
    tmpfile("new content", ".config.tmp");
    ASSERT_EQ(::rename((env.mnt + "/d/.config.tmp").c_str(), (env.mnt + "/d/config").c_str()), 0);
    tmpfile("never linked", "");
    auto w = mount.wait();
    EXPECT_EQ(w.status, 0) << w.output << mount.log();
    EXPECT_EQ(env.diff(), "");
    EXPECT_EQ(read_file(env.mirror + "/d/linked"), data);
    EXPECT_EQ(read_file(env.mirror + "/d/config"), "new content");
    EXPECT_EQ(sh("ls -A " + env.mirror + "/d").output, "config\nlinked\n");
}

TEST(E2eBasic, StatusShowsTheMirrorAndWaitTimesOutWhenItIsDown) {
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    write_file(env.mnt + "/a", "a");
    ASSERT_EQ(mount.wait().status, 0);
    const std::string json = mount.status_json();
    EXPECT_NE(json.find("\"connected\": true"), std::string::npos) << json;
    EXPECT_NE(json.find(env.url()), std::string::npos) << json;
    daemon.kill9();
    write_file(env.mnt + "/b", "written while the mirror is down");  // never blocks
    auto w = mount.wait(2);
    EXPECT_EQ(w.status, 1) << w.output;
    EXPECT_NE(w.output.find("timeout"), std::string::npos) << w.output;
    daemon.start();
    auto w2 = mount.wait();
    EXPECT_EQ(w2.status, 0) << w2.output;
    EXPECT_EQ(env.diff(), "");
}

}  // namespace
}  // namespace sfs::e2e
