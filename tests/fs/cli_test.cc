// The `syncfs` binary: option errors, mounting in place, the mount helper path
// (mount -t fuse.syncfs, an /etc/fstab line) and clean unmounts with umount/fusermount3.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/fs/mount_fixture.h"
#include "tests/fs/process_util.h"

#ifndef SYNCFS_BINARY
#error "SYNCFS_BINARY must name the built syncfs executable"
#endif

namespace sfs::fs::test {
namespace {

const std::string kBinary = SYNCFS_BINARY;

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Whatever happens in the test, the mount goes away and the daemon ends.
class MountGuard {
public:
    explicit MountGuard(std::string mnt) : mnt_(std::move(mnt)) {}
    ~MountGuard() {
        if (!mount_line(mnt_).empty()) ::umount2(mnt_.c_str(), MNT_DETACH);
        for (pid_t pid : syncfs_pids_with(mnt_)) ::kill(pid, SIGTERM);
    }

private:
    std::string mnt_;
};

// Installs the built binary as /usr/local/sbin/syncfs (where mount.fuse3 finds it with
// mount(8)'s cleared PATH) for the test, restoring whatever was there before.
class InstalledBinary {
public:
    InstalledBinary() {
        namespace fs = std::filesystem;
        if (fs::exists(kPath, ec_) || fs::is_symlink(kPath, ec_)) {
            fs::rename(kPath, kBackup, ec_);
            had_ = !ec_;
        }
        fs::create_directories("/usr/local/sbin", ec_);
        fs::copy_file(kBinary, kPath, fs::copy_options::overwrite_existing, ec_);
        ::chmod(kPath, 0755);
    }
    ~InstalledBinary() {
        std::error_code ec;
        std::filesystem::remove(kPath, ec);
        if (had_) std::filesystem::rename(kBackup, kPath, ec);
    }
    bool ok() const { return std::filesystem::exists(kPath); }

private:
    static constexpr const char* kPath = "/usr/local/sbin/syncfs";
    static constexpr const char* kBackup = "/usr/local/sbin/syncfs.syncfs-test-backup";
    std::error_code ec_;
    bool had_ = false;
};

// Adds one line to /etc/fstab for the test and restores the original file after.
class FstabLine {
public:
    explicit FstabLine(const std::string& line) : original_(read_text("/etc/fstab")) {
        std::string text = original_;
        if (!text.empty() && text.back() != '\n') text.push_back('\n');
        write_text("/etc/fstab", text + line + "\n");
    }
    ~FstabLine() { write_text("/etc/fstab", original_); }

private:
    std::string original_;
};

TEST(Cli, OptionErrorsAreOneLineAndExit1) {
    TempDir dir;
    const std::string src = dir.sub("src"), mnt = dir.sub("mnt"), file = dir.sub("file");
    std::filesystem::create_directories(src);
    std::filesystem::create_directories(mnt);
    write_text(file, "x");
    struct Case {
        std::string args;
        std::string expected;
    };
    std::vector<Case> cases = {
        {src + " " + mnt + " -o bogus", "syncfs: unknown option 'bogus'"},
        {src + " " + mnt + " -o max_fds=lots", "syncfs: max_fds=lots: not a valid number"},
        {src + " " + mnt + " -o delay=-1", "syncfs: delay=-1: not a valid number"},
        {src + " " + mnt + " -o mirror=ftp://x/y", "syncfs: mirror=ftp://x/y: expected rsync://[user@]host[:port]/module"},
        {src + " " + mnt + " -q", "syncfs: unknown option '-q'"},
        {src, "syncfs: missing MOUNTPOINT"},
        {"", "syncfs: missing SOURCE and MOUNTPOINT"},
        {dir.sub("nope") + " " + mnt, "syncfs: " + dir.sub("nope") + ": No such file or directory"},
        {file + " " + mnt, "syncfs: " + file + ": not a directory"},
        {src + " " + dir.sub("nomnt"), "syncfs: " + dir.sub("nomnt") + ": No such file or directory"},
        {src + " " + file, "syncfs: " + file + ": not a directory"},
    };
    for (const auto& c : cases) {
        auto r = run(kBinary + " " + c.args, 10);
        EXPECT_EQ(r.exit_code, 1) << c.args;
        EXPECT_EQ(r.output, c.expected + "\n") << c.args;
    }
    EXPECT_TRUE(mount_line(mnt).empty());
    auto help = run(kBinary + " --help", 10);
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.output.find("usage: "), std::string::npos);
}

TEST(Cli, MountInPlaceShowsOldContentAndUnmountsWithFusermount) {
    TempDir dir;
    const std::string web = dir.sub("web");
    std::filesystem::create_directories(web);
    write_text(web + "/old.html", "old content");
    MountGuard guard(web);
    auto r = run(kBinary + " " + web + " " + web, 20);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string line = mount_line(web);
    EXPECT_EQ(line.substr(0, web.size() * 2 + 13), web + " " + web + " fuse.syncfs") << line;
    EXPECT_EQ(read_text(web + "/old.html"), "old content");
    write_text(web + "/new.html", "new");
    auto pids = syncfs_pids_with(web);
    ASSERT_EQ(pids.size(), 1u);
    auto u = run("fusermount3 -u " + web, 20);
    EXPECT_EQ(u.exit_code, 0) << u.output;
    EXPECT_TRUE(mount_line(web).empty());
    EXPECT_TRUE(wait_for([&] { return process_gone(pids[0]); }));
    EXPECT_EQ(read_text(web + "/new.html"), "new");  // now the underlying directory
}

// mount -t and fstab share /usr/local/sbin/syncfs (and /etc/fstab): one test, run in
// sequence, so parallel ctest runs never see the other's install or cleanup.
void mount_dash_t() {
    TempDir dir;
    const std::string data = dir.sub("data"), web = dir.sub("web");
    std::filesystem::create_directories(data);
    std::filesystem::create_directories(web);
    write_text(data + "/index.html", "hello");
    MountGuard guard(web);
    auto r = run("env -i /usr/bin/mount -t fuse.syncfs " + data + " " + web + " -o allow_other", 20);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string line = mount_line(web);
    EXPECT_EQ(line.substr(0, data.size() + web.size() + 13), data + " " + web + " fuse.syncfs") << line;
    EXPECT_NE(line.find("allow_other"), std::string::npos) << line;
    EXPECT_EQ(read_text(web + "/index.html"), "hello");
    write_text(web + "/through", "mount");
    EXPECT_EQ(read_text(data + "/through"), "mount");
    auto pids = syncfs_pids_with(web);
    ASSERT_EQ(pids.size(), 1u);
    auto df = run("df --output=source,fstype " + web, 10);
    EXPECT_NE(df.output.find(data), std::string::npos) << df.output;
    auto u = run("umount " + web, 20);
    EXPECT_EQ(u.exit_code, 0) << u.output;
    EXPECT_TRUE(mount_line(web).empty());
    EXPECT_TRUE(wait_for([&] { return process_gone(pids[0]); }));
}

void fstab_line() {
    TempDir dir;
    const std::string data = dir.sub("data"), web = dir.sub("web");
    std::filesystem::create_directories(data);
    std::filesystem::create_directories(web);
    write_text(data + "/a", "A");
    MountGuard guard(web);
    FstabLine fstab(data + " " + web + " fuse.syncfs allow_other,_netdev,noatime,max_fds=1000 0 0");
    auto r = run("env -i /usr/bin/mount " + web, 20);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string line = mount_line(web);
    EXPECT_EQ(line.substr(0, data.size() + web.size() + 13), data + " " + web + " fuse.syncfs") << line;
    EXPECT_NE(line.find("noatime"), std::string::npos) << line;
    EXPECT_EQ(read_text(web + "/a"), "A");
    auto pids = syncfs_pids_with(web);
    ASSERT_EQ(pids.size(), 1u);
    auto u = run("umount " + web, 20);
    EXPECT_EQ(u.exit_code, 0) << u.output;
    EXPECT_TRUE(mount_line(web).empty());
    EXPECT_TRUE(wait_for([&] { return process_gone(pids[0]); }));
}

TEST(Cli, MountHelperWithMountDashTAndFstab) {
    InstalledBinary installed;
    ASSERT_TRUE(installed.ok());
    {
        SCOPED_TRACE("mount -t fuse.syncfs");
        mount_dash_t();
    }
    {
        SCOPED_TRACE("fstab line");
        fstab_line();
    }
}

}  // namespace
}  // namespace sfs::fs::test
