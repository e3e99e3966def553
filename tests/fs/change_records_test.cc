// Exact change records for scripted sequences on a real in-process FUSE mount.
// no_writeback makes every write(2) reach SOURCE as the same write, so ranges are exact;
// one test checks what the writeback cache turns them into.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/fs/mount_fixture.h"

namespace sfs::fs::test {
namespace {

std::string describe(const ChangeRecord& r) {
    std::string s = std::string(to_string(r.kind)) + " " + (r.path.empty() ? "<root>" : r.path);
    char buf[128];
    switch (r.kind) {
        case ChangeKind::Mkdir:
        case ChangeKind::Mknod:
        case ChangeKind::Create:
            std::snprintf(buf, sizeof buf, " mode=%o uid=%u gid=%u", r.mode, r.uid, r.gid);
            s += buf;
            break;
        case ChangeKind::Symlink:
            s += " -> " + r.target;
            break;
        case ChangeKind::Link:
            s += " = " + r.path2;
            break;
        case ChangeKind::Rename:
            std::snprintf(buf, sizeof buf, " flags=%u", r.flags);
            s += " to " + r.path2 + buf;
            break;
        case ChangeKind::Unlink:
            std::snprintf(buf, sizeof buf, " nlink=%llu", static_cast<unsigned long long>(r.nlink));
            s += buf;
            break;
        case ChangeKind::Rmdir:
            break;
        case ChangeKind::Setattr:
            if (r.attr_mask & kAttrMode) { std::snprintf(buf, sizeof buf, " mode=%o", r.mode); s += buf; }
            if (r.attr_mask & kAttrUid) { std::snprintf(buf, sizeof buf, " uid=%u", r.uid); s += buf; }
            if (r.attr_mask & kAttrGid) { std::snprintf(buf, sizeof buf, " gid=%u", r.gid); s += buf; }
            if (r.attr_mask & kAttrSize) { std::snprintf(buf, sizeof buf, " size=%llu", static_cast<unsigned long long>(r.size)); s += buf; }
            if (r.attr_mask & kAttrAtime) s += " atime";
            if (r.attr_mask & kAttrMtime) s += " mtime";
            break;
        case ChangeKind::Setxattr:
            s += " " + r.xattr_name + "=" + r.xattr_value;
            break;
        case ChangeKind::Removexattr:
            s += " " + r.xattr_name;
            break;
        case ChangeKind::Write:
            std::snprintf(buf, sizeof buf, " [%llu,+%llu)", static_cast<unsigned long long>(r.offset),
                          static_cast<unsigned long long>(r.length));
            s += buf;
            break;
        case ChangeKind::Verify:  // journaled by the replicator only, never by fs/
            break;
    }
    return s;
}

std::vector<std::string> describe_all(const std::vector<ChangeRecord>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.push_back(describe(r));
    return out;
}

ino_t ino_of(const std::string& path) {
    struct stat st;
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_ino;
}

void write_file(const std::string& path, const std::string& data, mode_t mode = 0644) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::close(fd), 0);
}

class ChangeRecords : public ::testing::Test {
protected:
    InProcessMount m{{"no_writeback"}};
    void SetUp() override { m.start(); }
    std::vector<std::string> take() { return describe_all(m.sink().take()); }
};

TEST_F(ChangeRecords, CreateAndWriteAtOffset) {
    int fd = ::open(m.at("f").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "abc", 3, 100), 3);
    ASSERT_EQ(::pwrite(fd, "Z", 1, 4096), 1);
    ASSERT_EQ(::close(fd), 0);
    auto records = m.sink().take();
    EXPECT_EQ(describe_all(records),
              (std::vector<std::string>{"create f mode=100640 uid=0 gid=0", "write f [100,+3)", "write f [4096,+1)"}));
    ASSERT_EQ(records.size(), 3u);
    EXPECT_EQ(records[0].ino, ino_of(m.src("f")));
    EXPECT_EQ(records[1].ino, records[0].ino);
}

TEST_F(ChangeRecords, Truncate) {
    write_file(m.at("f"), "0123456789abcdef");
    m.sink().take();
    ASSERT_EQ(::truncate(m.at("f").c_str(), 10), 0);
    auto records = m.sink().take();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].kind, ChangeKind::Setattr);
    EXPECT_EQ(records[0].path, "f");
    EXPECT_TRUE(records[0].attr_mask & kAttrSize);
    EXPECT_EQ(records[0].size, 10u);
    EXPECT_EQ(records[0].ino, ino_of(m.src("f")));
}

TEST_F(ChangeRecords, OpenWithTruncIsASizeChange) {
    write_file(m.at("f"), "0123456789");
    m.sink().take();
    int fd = ::open(m.at("f").c_str(), O_WRONLY | O_TRUNC);
    ASSERT_GE(fd, 0);
    ::close(fd);
    auto records = m.sink().take();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].kind, ChangeKind::Setattr);
    EXPECT_TRUE(records[0].attr_mask & kAttrSize);
    EXPECT_EQ(records[0].size, 0u);
}

// A write by a caller without CAP_FSETID cleared S_ISUID on SOURCE: the mirror must see
// that mode change too (FUSE_HANDLE_KILLPRIV_V2: the daemon clears it, not the kernel).
TEST(ChangeRecordsSetId, UnprivilegedWriteRecordsTheClearedMode) {
    for (const char* writeback : {"writeback", "no_writeback"}) {
        SCOPED_TRACE(writeback);
        InProcessMount m({"allow_other", writeback});
        m.start();
        EXPECT_TRUE(m.context().killpriv_v2.load()) << "kernel did not accept FUSE_HANDLE_KILLPRIV_V2";
        write_file(m.at("f"), "0123456789", 0666);
        ASSERT_EQ(::chmod(m.at("f").c_str(), 04666), 0);
        m.sink().take();
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            if (::setresgid(2000, 2000, 2000) != 0 || ::setresuid(2000, 2000, 2000) != 0) ::_exit(2);
            int fd = ::open(m.at("f").c_str(), O_WRONLY);
            if (fd < 0 || ::pwrite(fd, "ab", 2, 0) != 2 || ::close(fd) != 0) ::_exit(3);
            ::_exit(0);
        }
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
        struct stat st;
        ASSERT_EQ(::stat(m.src("f").c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0666u);
        bool mode_recorded = false;
        for (const auto& r : m.sink().take()) {
            if (r.kind == ChangeKind::Setattr && (r.attr_mask & kAttrMode)) {
                EXPECT_EQ(r.path, "f");
                EXPECT_EQ(r.mode & 07777, 0666u);
                mode_recorded = true;
            }
        }
        EXPECT_TRUE(mode_recorded);
    }
}

TEST_F(ChangeRecords, RenameOverExistingFile) {
    write_file(m.at("a"), "A");
    write_file(m.at("b"), "B");
    const ino_t a = ino_of(m.src("a"));
    m.sink().take();
    ASSERT_EQ(::rename(m.at("a").c_str(), m.at("b").c_str()), 0);
    auto records = m.sink().take();
    EXPECT_EQ(describe_all(records), (std::vector<std::string>{"rename a to b flags=0"}));
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].ino, a);
    // The moved inode is now known under its new name.
    int fd = ::open(m.at("b").c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "x", 1), 1);
    ::close(fd);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"write b [1,+1)"}));
}

TEST_F(ChangeRecords, RenameFlags) {
    write_file(m.at("a"), "A");
    write_file(m.at("b"), "B");
    m.sink().take();
    EXPECT_EQ(::renameat2(AT_FDCWD, m.at("a").c_str(), AT_FDCWD, m.at("b").c_str(), RENAME_NOREPLACE), -1);
    EXPECT_EQ(errno, EEXIST);
    ASSERT_EQ(::renameat2(AT_FDCWD, m.at("a").c_str(), AT_FDCWD, m.at("b").c_str(), RENAME_EXCHANGE), 0);
    EXPECT_EQ(describe_all(m.sink().take()),
              (std::vector<std::string>{"rename a to b flags=" + std::to_string(RENAME_EXCHANGE)}));
}

TEST_F(ChangeRecords, HardlinkThenUnlink) {
    write_file(m.at("f"), "data");
    const ino_t f = ino_of(m.src("f"));
    m.sink().take();
    ASSERT_EQ(::link(m.at("f").c_str(), m.at("g").c_str()), 0);
    ASSERT_EQ(::unlink(m.at("f").c_str()), 0);
    auto records = m.sink().take();
    EXPECT_EQ(describe_all(records), (std::vector<std::string>{"link g = f", "unlink f nlink=1"}));
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].ino, f);
    EXPECT_EQ(records[1].ino, f);
    // Writes through the remaining name are reported under it.
    int fd = ::open(m.at("g").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "X", 1, 0), 1);
    ::close(fd);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"write g [0,+1)"}));
    ASSERT_EQ(::unlink(m.at("g").c_str()), 0);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"unlink g nlink=0"}));
}

// A hard-linked file whose remembered names were all unlinked is still reachable under
// its remaining name. The path cache used to keep only the last name seen, and the /proc
// fallback reads the name of the O_PATH fd's dentry, which was "f (deleted)" here: the
// link became "create k" + "write k" (on the mirror a separate file, not a hard link) and
// the write and chmod of the remaining name made no records at all.
TEST_F(ChangeRecords, HardlinkKeepsItsRemainingNameWhenTheKnownOnesAreUnlinked) {
    write_file(m.at("f"), "data");
    m.sink().take();
    ASSERT_EQ(::link(m.at("f").c_str(), m.at("g").c_str()), 0);
    ASSERT_EQ(::unlink(m.at("f").c_str()), 0);
    ASSERT_EQ(::link(m.at("g").c_str(), m.at("h").c_str()), 0);
    ASSERT_EQ(::unlink(m.at("h").c_str()), 0);
    ASSERT_EQ(::link(m.at("g").c_str(), m.at("k").c_str()), 0);
    ASSERT_EQ(::unlink(m.at("k").c_str()), 0);
    int fd = ::open(m.at("g").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "X", 1, 0), 1);
    ::close(fd);
    ASSERT_EQ(::chmod(m.at("g").c_str(), 0600), 0);
    EXPECT_EQ(take(), (std::vector<std::string>{"link g = f", "unlink f nlink=1", "link h = g", "unlink h nlink=1",
                                                "link k = g", "unlink k nlink=1", "write g [0,+1)",
                                                "setattr g mode=100600"}));
}

// rename(2) between two names of one node does nothing: no record (replayed on a mirror it
// would remove the first name), and both names still work.
TEST_F(ChangeRecords, RenameBetweenTwoLinksOfOneFileIsNoChange) {
    write_file(m.at("f"), "data");
    ASSERT_EQ(::link(m.at("f").c_str(), m.at("g").c_str()), 0);
    m.sink().take();
    ASSERT_EQ(::rename(m.at("f").c_str(), m.at("g").c_str()), 0);
    ASSERT_EQ(::renameat2(AT_FDCWD, m.at("g").c_str(), AT_FDCWD, m.at("f").c_str(), RENAME_EXCHANGE), 0);
    EXPECT_EQ(take(), std::vector<std::string>{});
    EXPECT_EQ(ino_of(m.src("f")), ino_of(m.src("g")));
    ASSERT_EQ(::chmod(m.at("f").c_str(), 0600), 0);
    auto got = take();
    ASSERT_EQ(got.size(), 1u);
    EXPECT_TRUE(got[0] == "setattr f mode=100600" || got[0] == "setattr g mode=100600") << got[0];
}

// An O_TMPFILE has nothing a mirror could replay until it is linked in: its writes and
// attribute changes make no records, and the link is a new file with all its data.
TEST_F(ChangeRecords, TmpfileLinkedInIsCreateAndWrite) {
    ASSERT_EQ(::mkdir(m.at("d").c_str(), 0755), 0);
    m.sink().take();
    int fd = ::open(m.at("d").c_str(), O_TMPFILE | O_RDWR, 0640);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::pwrite(fd, "hello", 5, 0), 5);
    ASSERT_EQ(::fchmod(fd, 0600), 0);
    ASSERT_EQ(::ftruncate(fd, 7), 0);
    EXPECT_EQ(take(), std::vector<std::string>{});
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ASSERT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, m.at("d/t").c_str(), AT_SYMLINK_FOLLOW), 0);
    ASSERT_EQ(::close(fd), 0);
    auto records = m.sink().take();
    EXPECT_EQ(describe_all(records), (std::vector<std::string>{"create d/t mode=100600 uid=0 gid=0", "write d/t [0,+7)"}));
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].ino, ino_of(m.src("d/t")));
    EXPECT_EQ(records[1].ino, records[0].ino);
    // From now on it is an ordinary file.
    ASSERT_EQ(::chmod(m.at("d/t").c_str(), 0644), 0);
    EXPECT_EQ(take(), (std::vector<std::string>{"setattr d/t mode=100644"}));
}

// xattrs set while the tmpfile had no name were never recorded: they follow the Create.
TEST_F(ChangeRecords, TmpfileLinkedInCarriesItsXattrs) {
    int fd = ::open(m.mnt().c_str(), O_TMPFILE | O_RDWR, 0640);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::fsetxattr(fd, "user.origin", "upload", 6, 0), 0) << std::strerror(errno);
    EXPECT_EQ(take(), std::vector<std::string>{});
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ASSERT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, m.at("x").c_str(), AT_SYMLINK_FOLLOW), 0);
    ASSERT_EQ(::close(fd), 0);
    auto records = m.sink().take();
    ASSERT_EQ(records.size(), 2u) << ::testing::PrintToString(describe_all(records));
    EXPECT_EQ(records[0].kind, ChangeKind::Create);
    EXPECT_EQ(records[1].kind, ChangeKind::Setxattr);
    EXPECT_EQ(records[1].path, "x");
    EXPECT_EQ(records[1].xattr_name, "user.origin");
    EXPECT_EQ(records[1].xattr_value, "upload");
}

TEST_F(ChangeRecords, TmpfileNeverLinkedMakesNoRecords) {
    for (int i = 0; i < 3; ++i) {
        int fd = ::open(m.mnt().c_str(), O_TMPFILE | O_RDWR, 0644);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        ASSERT_EQ(::pwrite(fd, "data", 4, 4096), 4);
        ASSERT_EQ(::fallocate(fd, 0, 0, 8192), 0);
        ASSERT_EQ(::fchmod(fd, 0600), 0);
        ASSERT_EQ(::fsync(fd), 0);
        ASSERT_EQ(::close(fd), 0);
    }
    // An O_EXCL one cannot be linked at all.
    int fd = ::open(m.mnt().c_str(), O_TMPFILE | O_EXCL | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "x", 1), 1);
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    EXPECT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, m.at("t").c_str(), AT_SYMLINK_FOLLOW), -1);
    EXPECT_EQ(errno, ENOENT);
    ::close(fd);
    EXPECT_EQ(take(), std::vector<std::string>{});
    EXPECT_TRUE(std::filesystem::is_empty(m.source()));
}

TEST_F(ChangeRecords, MkdirRmdirAndNestedPaths) {
    ASSERT_EQ(::mkdir(m.at("d").c_str(), 0750), 0);
    ASSERT_EQ(::mkdir(m.at("d/e").c_str(), 0755), 0);
    write_file(m.at("d/e/f"), "x");
    ASSERT_EQ(::rename(m.at("d").c_str(), m.at("D").c_str()), 0);
    ASSERT_EQ(::truncate(m.at("D/e/f").c_str(), 0), 0);
    ASSERT_EQ(::unlink(m.at("D/e/f").c_str()), 0);
    ASSERT_EQ(::rmdir(m.at("D/e").c_str()), 0);
    EXPECT_EQ(::rmdir(m.at("nope").c_str()), -1);  // failed ops emit nothing
    EXPECT_EQ(::mkdir(m.at("D").c_str(), 0755), -1);
    auto got = take();
    ASSERT_GE(got.size(), 7u);
    EXPECT_EQ(got[0], "mkdir d mode=40750 uid=0 gid=0");
    EXPECT_EQ(got[1], "mkdir d/e mode=40755 uid=0 gid=0");
    EXPECT_EQ(got[2], "create d/e/f mode=100644 uid=0 gid=0");
    EXPECT_EQ(got[3], "write d/e/f [0,+1)");
    EXPECT_EQ(got[4], "rename d to D flags=0");
    EXPECT_EQ(got[5].substr(0, 21), "setattr D/e/f size=0");
    EXPECT_EQ(got[6], "unlink D/e/f nlink=0");
    ASSERT_EQ(got.size(), 8u);
    EXPECT_EQ(got[7], "rmdir D/e");
}

TEST_F(ChangeRecords, ChmodChownUtimens) {
    write_file(m.at("f"), "x");
    m.sink().take();
    ASSERT_EQ(::chmod(m.at("f").c_str(), 0600), 0);
    ASSERT_EQ(::chown(m.at("f").c_str(), 1234, 5678), 0);
    struct timespec ts[2] = {{1000, 0}, {0, UTIME_OMIT}};
    ASSERT_EQ(::utimensat(AT_FDCWD, m.at("f").c_str(), ts, 0), 0);
    auto records = m.sink().take();
    EXPECT_EQ(describe_all(records), (std::vector<std::string>{"setattr f mode=100600", "setattr f uid=1234 gid=5678",
                                                              "setattr f atime"}));
    ASSERT_EQ(records.size(), 3u);
    EXPECT_EQ(records[2].atime.tv_sec, 1000);
}

TEST_F(ChangeRecords, Xattrs) {
    write_file(m.at("f"), "x");
    m.sink().take();
    ASSERT_EQ(::setxattr(m.at("f").c_str(), "user.k", "v1", 2, 0), 0);
    ASSERT_EQ(::removexattr(m.at("f").c_str(), "user.k"), 0);
    EXPECT_EQ(::removexattr(m.at("f").c_str(), "user.k"), -1);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"setxattr f user.k=v1", "removexattr f user.k"}));
}

TEST_F(ChangeRecords, SymlinkAndMknod) {
    ASSERT_EQ(::symlink("target/x", m.at("s").c_str()), 0);
    ASSERT_EQ(::mkfifo(m.at("p").c_str(), 0600), 0);
    EXPECT_EQ(describe_all(m.sink().take()),
              (std::vector<std::string>{"symlink s -> target/x", "mknod p mode=10600 uid=0 gid=0"}));
}

TEST_F(ChangeRecords, FallocateAndCopyFileRange) {
    write_file(m.at("a"), std::string(8192, 'a'));
    int fd = ::open(m.at("b").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    int in = ::open(m.at("a").c_str(), O_RDONLY);
    ASSERT_GE(in, 0);
    m.sink().take();
    ASSERT_EQ(::fallocate(fd, 0, 0, 4096), 0);
    ASSERT_EQ(::fallocate(fd, FALLOC_FL_KEEP_SIZE, 4096, 4096), 0);  // no visible change
    ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
    loff_t off_in = 0, off_out = 100;
    ASSERT_EQ(::copy_file_range(in, &off_in, fd, &off_out, 50, 0), 50);
    ::close(in);
    ::close(fd);
    EXPECT_EQ(describe_all(m.sink().take()),
              (std::vector<std::string>{"write b [0,+4096)", "write b [0,+4096)", "write b [100,+50)"}));
}

// With the kernel's writeback cache, data reaches SOURCE when pages are written back: the
// records cover at least what was written, and arrive by fsync/close.
TEST(ChangeRecordsWriteback, WritesAreCoveredByRecords) {
    InProcessMount m;
    m.start();
    int fd = ::open(m.at("f").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "abc", 3, 100), 3);
    ASSERT_EQ(::pwrite(fd, "xyz", 3, 10000), 3);
    ASSERT_EQ(::fsync(fd), 0);
    ::close(fd);
    auto records = m.sink().take();
    bool covered[2] = {false, false};
    for (const auto& r : records) {
        if (r.kind != ChangeKind::Write) continue;
        EXPECT_EQ(r.path, "f");
        if (r.offset <= 100 && r.offset + r.length >= 103) covered[0] = true;
        if (r.offset <= 10000 && r.offset + r.length >= 10003) covered[1] = true;
    }
    EXPECT_TRUE(covered[0]) << describe_all(records).size();
    EXPECT_TRUE(covered[1]);
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records[0].kind, ChangeKind::Create);
}

// With the writeback cache the tmpfile's data may reach SOURCE only after the link (at
// close): the records still start with the Create and cover every byte.
TEST(ChangeRecordsWriteback, TmpfileLinkedInIsCreateThenItsData) {
    InProcessMount m;
    m.start();
    int fd = ::open(m.mnt().c_str(), O_TMPFILE | O_RDWR, 0640);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ASSERT_EQ(::pwrite(fd, "0123456789", 10, 5000), 10);
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ASSERT_EQ(::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, m.at("t").c_str(), AT_SYMLINK_FOLLOW), 0);
    ASSERT_EQ(::close(fd), 0);
    auto records = m.sink().take();
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(describe(records[0]), "create t mode=100640 uid=0 gid=0");
    bool covered = false;
    for (const auto& r : records) {
        EXPECT_EQ(r.path, "t") << describe(r);
        EXPECT_TRUE(r.kind == ChangeKind::Create || r.kind == ChangeKind::Write || r.kind == ChangeKind::Setattr)
            << describe(r);
        if (r.kind == ChangeKind::Write && r.offset <= 5000 && r.offset + r.length >= 5010) covered = true;
    }
    EXPECT_TRUE(covered);
}

// The kernel's writeback cache follows unlink, rename and link with a synchronous
// SETATTR(mtime, ctime) carrying its cached mtime (docs/fs.md, "Time flushes"). When that
// mtime is SOURCE's own, syncfs changes nothing and records nothing: the op is its one
// record. A real time change still is a Setattr. (The files are made on SOURCE: one just
// written through the mount may have a cached mtime older than SOURCE's, from before its
// data was written back, and then the flush is a real change, recorded.)
TEST(ChangeRecordsWriteback, TimeFlushAfterNamespaceOpsIsNoRecord) {
    InProcessMount m;
    m.prepare_source([](const std::string& src) {
        for (const char* name : {"f", "g", "h"}) write_file(src + "/" + name, "data");
    });
    m.start();
    struct stat before;
    ASSERT_EQ(::stat(m.src("g").c_str(), &before), 0);
    m.sink().take();
    ASSERT_EQ(::unlink(m.at("f").c_str()), 0);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"unlink f nlink=0"}));
    ASSERT_EQ(::rename(m.at("g").c_str(), m.at("g2").c_str()), 0);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"rename g to g2 flags=0"}));
    ASSERT_EQ(::link(m.at("g2").c_str(), m.at("g3").c_str()), 0);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"link g3 = g2"}));
    struct stat after;
    ASSERT_EQ(::stat(m.src("g2").c_str(), &after), 0);
    EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    // An open, unlinked file: its time flush is no record either.
    int fd = ::open(m.at("h").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::unlink(m.at("h").c_str()), 0);
    ::close(fd);
    EXPECT_EQ(describe_all(m.sink().take()), (std::vector<std::string>{"unlink h nlink=0"}));
    // utimes is a change.
    struct timeval tv[2] = {{1000, 0}, {2000, 0}};
    ASSERT_EQ(::utimes(m.at("g2").c_str(), tv), 0);
    auto records = m.sink().take();
    ASSERT_EQ(records.size(), 1u) << describe_all(records).size();
    EXPECT_EQ(records[0].kind, ChangeKind::Setattr);
    EXPECT_TRUE(records[0].attr_mask & kAttrMtime);
    EXPECT_EQ(records[0].mtime.tv_sec, 2000);
    ASSERT_EQ(::stat(m.src("g2").c_str(), &after), 0);
    EXPECT_EQ(after.st_mtim.tv_sec, 2000);
}

}  // namespace
}  // namespace sfs::fs::test
