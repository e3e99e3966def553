// Resource bounds of a real `syncfs` process: 100k files created and stat'ed through the
// mount while the daemon's open fds stay under max_fds, and its memory stays flat across
// repeated full-tree walks (`find`).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/process_util.h"

namespace sfs::fs::test {
namespace {

std::size_t open_fds(pid_t pid) {
    std::size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        (void)e;
        ++n;
    }
    return n;
}

long rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    }
    return -1;
}

// Walks the tree like `find`: readdir every directory, lstat every entry.
std::size_t walk(const std::string& root) {
    std::size_t n = 0;
    for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator(); ++it) {
        struct stat st;
        ::lstat(it->path().c_str(), &st);
        ++n;
    }
    return n;
}

// `syncfs SRC MNT -f -o max_fds=N` as a child; the destructor closes `fds` (files the test
// holds open on the mount), detaches the mount and reaps the daemon, whatever failed.
struct ForegroundMount {
    pid_t pid = -1;
    std::string mnt;
    std::vector<int> fds;
    ForegroundMount(const std::string& src, const std::string& mountpoint, std::size_t max_fds) : mnt(mountpoint) {
        const std::string opts = "max_fds=" + std::to_string(max_fds);
        pid = ::fork();
        if (pid == 0) {
            ::execl(SYNCFS_BINARY, "syncfs", src.c_str(), mnt.c_str(), "-f", "-o", opts.c_str(), nullptr);
            ::_exit(127);
        }
    }
    ~ForegroundMount() {
        for (int fd : fds) ::close(fd);
        ::umount2(mnt.c_str(), MNT_DETACH);
        if (pid > 0) {
            ::kill(pid, SIGTERM);
            int status;
            ::waitpid(pid, &status, 0);
        }
    }
};

TEST(FdBound, HundredThousandFilesStayUnderMaxFds) {
    constexpr std::size_t kMaxFds = 512;
    constexpr int kDirs = 100, kPerDir = 1000;
    // tmpfs keeps the 100k creates cheap on a loaded CI disk; it has file handles too.
    TempDir dir(std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
    const std::string src = dir.sub("src"), mnt = dir.sub("mnt");
    std::filesystem::create_directories(src);
    std::filesystem::create_directories(mnt);
    ForegroundMount mount(src, mnt, kMaxFds);
    const pid_t pid = mount.pid;
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(wait_for([&] { return !mount_line(mnt).empty(); })) << "mount did not appear";

    std::size_t peak = 0;
    for (int d = 0; d < kDirs; ++d) {
        const std::string sub = mnt + "/d" + std::to_string(d);
        ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
        for (int f = 0; f < kPerDir; ++f) {
            int fd = ::open((sub + "/f" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
            ASSERT_GE(fd, 0);
            ::close(fd);
        }
        if (d % 10 == 0) peak = std::max(peak, open_fds(pid));
    }
    struct stat st;
    for (int d = 0; d < kDirs; ++d) {
        for (int f = 0; f < kPerDir; ++f) {
            ASSERT_EQ(::stat((mnt + "/d" + std::to_string(d) + "/f" + std::to_string(f)).c_str(), &st), 0);
        }
        if (d % 10 == 0) peak = std::max(peak, open_fds(pid));
    }
    peak = std::max(peak, open_fds(pid));
    EXPECT_LE(peak, kMaxFds);
    EXPECT_GT(peak, 64u);  // the cache is used, not disabled

    // Memory flat under find: the second and third walks may not grow the daemon.
    EXPECT_EQ(walk(mnt), static_cast<std::size_t>(kDirs * (kPerDir + 1)));
    long after_first = rss_kib(pid);
    walk(mnt);
    walk(mnt);
    long after_third = rss_kib(pid);
    EXPECT_LE(open_fds(pid), kMaxFds);
    EXPECT_LT(after_third - after_first, 8 * 1024) << "RSS grew from " << after_first << " to " << after_third << " KiB";
    // The daemon still answers after all that.
    EXPECT_EQ(::stat((mnt + "/d0/f0").c_str(), &st), 0);
}

// fds of the daemon on files of SOURCE that have no name (nlink 0). Judged by the inode, not
// by the "(deleted)" in readlink: an fd taken on a tmpfile before it was linked in keeps that
// label (its dentry stays the anonymous one) although the file now has a name.
std::size_t deleted_fds(pid_t pid, const std::string& src) {
    std::size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(e.path(), ec).string();
        if (ec || target.rfind(src + "/", 0) != 0) continue;
        struct stat st{};
        if (::stat(e.path().c_str(), &st) == 0 && st.st_nlink == 0) ++n;
    }
    return n;
}

// O_TMPFILE nodes pin an fd each until linked in or forgotten (docs/fs.md, "O_TMPFILE"):
// closed ones give it back, so 2000 of them leave the daemon's fd count where it was and
// nothing of them on SOURCE; open ones are bounded by max_fds (ENFILE beyond).
TEST(FdBound, TmpfilesGiveTheirFdsBackAndStayUnderMaxFds) {
    constexpr std::size_t kMaxFds = 128;
    TempDir dir;
    const std::string src = dir.sub("src"), mnt = dir.sub("mnt");
    std::filesystem::create_directories(src);
    std::filesystem::create_directories(mnt);
    ForegroundMount reaper(src, mnt, kMaxFds);
    const pid_t pid = reaper.pid;
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(wait_for([&] { return !mount_line(mnt).empty(); })) << "mount did not appear";
    const std::string real_src = std::filesystem::canonical(src).string();

    // Warm up (threads started, root cached), then the baseline.
    for (int i = 0; i < 20; ++i) {
        int fd = ::open(mnt.c_str(), O_TMPFILE | O_RDWR, 0600);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        ::close(fd);
    }
    ASSERT_TRUE(wait_for([&] { return deleted_fds(pid, real_src) == 0; }));
    const std::size_t baseline = open_fds(pid);
    std::size_t peak = baseline;
    for (int i = 0; i < 2000; ++i) {
        int fd = ::open(mnt.c_str(), O_TMPFILE | O_RDWR, 0600);
        ASSERT_GE(fd, 0) << i << ": " << std::strerror(errno);
        ASSERT_EQ(::write(fd, "0123456789", 10), 10);
        ASSERT_EQ(::close(fd), 0);
        if (i % 100 == 0) peak = std::max(peak, open_fds(pid));
    }
    // The kernel forgets a closed tmpfile soon after, not synchronously. A few fds more than
    // the baseline are the daemon's bounded fd cache, not tmpfiles (those would be 2000).
    EXPECT_TRUE(wait_for([&] { return open_fds(pid) <= baseline + 8 && deleted_fds(pid, real_src) == 0; }))
        << open_fds(pid) << " fds now, " << baseline << " before, " << deleted_fds(pid, real_src) << " deleted files";
    EXPECT_LE(peak, kMaxFds);
    EXPECT_TRUE(std::filesystem::is_empty(src));

    // Held open: each costs two budget units (its handle and its pin) until ENFILE.
    int refused_errno = 0;
    for (int i = 0; i < 200; ++i) {
        int fd = ::open(mnt.c_str(), O_TMPFILE | O_RDWR, 0600);
        if (fd < 0) {
            refused_errno = errno;
            break;
        }
        reaper.fds.push_back(fd);
    }
    EXPECT_EQ(refused_errno, ENFILE);
    EXPECT_GE(reaper.fds.size(), 10u);
    EXPECT_LT(reaper.fds.size(), kMaxFds / 2);
    EXPECT_LE(open_fds(pid), kMaxFds);
    // Linking one in ends its pin; closing all gives everything back.
    const std::string proc = "/proc/self/fd/" + std::to_string(reaper.fds.front());
    ASSERT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (mnt + "/kept").c_str(), AT_SYMLINK_FOLLOW), 0);
    for (int fd : reaper.fds) ::close(fd);
    reaper.fds.clear();
    EXPECT_TRUE(wait_for([&] { return deleted_fds(pid, real_src) == 0; }));
    int fd = ::open(mnt.c_str(), O_TMPFILE | O_RDWR, 0600);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    ::close(fd);
    struct stat st;
    EXPECT_EQ(::stat((src + "/kept").c_str(), &st), 0);
}

}  // namespace
}  // namespace sfs::fs::test
