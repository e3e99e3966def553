// Every op through the mount against the native directory: each scenario runs once in a
// plain directory and once through a syncfs mount, writing what it observes (results,
// errno names, sizes, modes, contents; never inode numbers or clock values) to a
// transcript. The transcripts must be identical.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "tests/fs/mount_fixture.h"

namespace sfs::fs::test {
namespace {

class Transcript {
public:
    explicit Transcript(std::string root) : root_(std::move(root)) {}
    std::string p(const std::string& rel) const { return root_ + "/" + rel; }
    const std::string& root() const { return root_; }

    // Records "what -> value" or "what -> ERRNAME" for a syscall result.
    long rc(const std::string& what, long result) {
        int err = errno;
        lines_.push_back(what + " -> " + (result < 0 ? std::string(strerrorname_np(err)) : std::to_string(result)));
        errno = err;
        return result;
    }
    // Same, but any non-negative result is just "ok" (fds, etc).
    long ok(const std::string& what, long result) {
        int err = errno;
        lines_.push_back(what + " -> " + (result < 0 ? std::string(strerrorname_np(err)) : std::string("ok")));
        errno = err;
        return result;
    }
    void note(const std::string& line) { lines_.push_back(line); }
    // Records an open() result and closes the fd (no fd may stay open on a mount).
    void opened(const std::string& what, int fd) {
        ok(what, fd);
        if (fd >= 0) ::close(fd);
    }

    void stat(const std::string& rel) {
        struct stat st;
        if (::lstat(p(rel).c_str(), &st) != 0) {
            note("lstat " + rel + " -> " + strerrorname_np(errno));
            return;
        }
        char buf[160];
        std::snprintf(buf, sizeof buf, "lstat %s -> mode=%o nlink=%lu uid=%u gid=%u size=%lld", rel.c_str(), st.st_mode,
                      static_cast<unsigned long>(S_ISDIR(st.st_mode) ? 0 : st.st_nlink), st.st_uid, st.st_gid,
                      static_cast<long long>(S_ISDIR(st.st_mode) ? 0 : st.st_size));
        note(buf);
    }
    void content(const std::string& rel) {
        int fd = ::open(p(rel).c_str(), O_RDONLY);
        if (fd < 0) {
            note("read " + rel + " -> " + strerrorname_np(errno));
            return;
        }
        std::string data;
        char buf[65536];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
        ::close(fd);
        // Long contents are summarised (length + a checksum) to keep transcripts readable.
        if (data.size() > 64) {
            unsigned long sum = 0;
            for (unsigned char c : data) sum = sum * 131 + c;
            note("read " + rel + " -> " + std::to_string(data.size()) + " bytes sum " + std::to_string(sum));
        } else {
            note("read " + rel + " -> '" + data + "'");
        }
    }
    void list(const std::string& rel) {
        DIR* d = ::opendir(p(rel).c_str());
        if (!d) {
            note("opendir " + rel + " -> " + strerrorname_np(errno));
            return;
        }
        std::vector<std::string> names;
        while (struct dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
        ::closedir(d);
        std::sort(names.begin(), names.end());
        std::string s = "list " + rel + " ->";
        for (auto& n : names) s += " " + n;
        note(s);
    }
    void put(const std::string& rel, const std::string& data, mode_t mode = 0644) {
        int fd = ::open(p(rel).c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
        ok("create " + rel, fd);
        if (fd >= 0) {
            rc("write " + rel, ::write(fd, data.data(), data.size()));
            ::close(fd);
        }
    }
    const std::vector<std::string>& lines() const { return lines_; }

private:
    std::string root_;
    std::vector<std::string> lines_;
};

using Scenario = std::function<void(Transcript&)>;

// Runs `scenario` natively and through a fresh mount, and compares the transcripts.
void compare(const Scenario& scenario, std::vector<std::string> mount_options = {}) {
    TempDir native_dir;
    Transcript native(native_dir.path());
    scenario(native);
    InProcessMount m(std::move(mount_options));
    m.start();
    Transcript mounted(m.mnt());
    scenario(mounted);
    EXPECT_EQ(native.lines(), mounted.lines());
    EXPECT_GT(native.lines().size(), 0u);
}

TEST(Semantics, ErrorCodes) {
    compare([](Transcript& t) {
        t.put("f", "data");
        t.rc("mkdir d", ::mkdir(t.p("d").c_str(), 0755));
        t.put("d/inner", "x");
        t.opened("open missing", ::open(t.p("missing").c_str(), O_RDONLY));
        t.rc("mkdir existing", ::mkdir(t.p("d").c_str(), 0755));
        t.rc("rmdir nonempty", ::rmdir(t.p("d").c_str()));
        t.rc("rmdir file", ::rmdir(t.p("f").c_str()));
        t.rc("unlink dir", ::unlink(t.p("d").c_str()));
        t.rc("rename dir over file", ::rename(t.p("d").c_str(), t.p("f").c_str()));
        t.rc("rename file over dir", ::rename(t.p("f").c_str(), t.p("d").c_str()));
        t.rc("rename dir into itself", ::rename(t.p("d").c_str(), t.p("d/sub").c_str()));
        t.rc("link dir", ::link(t.p("d").c_str(), t.p("dl").c_str()));
        t.rc("link existing", ::link(t.p("f").c_str(), t.p("d/inner").c_str()));
        char buf[64];
        t.rc("readlink file", ::readlink(t.p("f").c_str(), buf, sizeof buf));
        t.opened("open dir for write", ::open(t.p("d").c_str(), O_WRONLY));
        t.ok("create excl existing", ::open(t.p("f").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644));
        t.opened("open through file", ::open(t.p("f/x").c_str(), O_RDONLY));
        t.opened("open O_DIRECTORY on file", ::open(t.p("f").c_str(), O_RDONLY | O_DIRECTORY));
        t.rc("symlink loop", ::symlink("loop", t.p("loop").c_str()));
        t.opened("open loop", ::open(t.p("loop").c_str(), O_RDONLY));
        t.opened("open nofollow", ::open(t.p("loop").c_str(), O_RDONLY | O_NOFOLLOW));
        std::string longname(256, 'n');
        t.opened("open long name", ::open(t.p(longname).c_str(), O_RDONLY | O_CREAT, 0644));
        t.rc("truncate dir", ::truncate(t.p("d").c_str(), 0));
        t.rc("truncate negative", ::truncate(t.p("f").c_str(), -1));
        t.rc("mknod fifo", ::mknod(t.p("fifo").c_str(), S_IFIFO | 0644, 0));
        t.rc("mknod existing", ::mknod(t.p("fifo").c_str(), S_IFIFO | 0644, 0));
        t.rc("mknod char dev", ::mknod(t.p("null").c_str(), S_IFCHR | 0666, makedev(1, 3)));
        t.rc("unlink missing", ::unlink(t.p("missing").c_str()));
        t.rc("rmdir dot", ::rmdir(t.p("d/.").c_str()));
        t.stat("fifo");
        t.stat("null");
        t.list("");
    });
}

TEST(Semantics, RenameFlags) {
    compare([](Transcript& t) {
        t.put("a", "A");
        t.put("b", "B");
        t.rc("mkdir d", ::mkdir(t.p("d").c_str(), 0755));
        t.rc("noreplace existing",
             ::renameat2(AT_FDCWD, t.p("a").c_str(), AT_FDCWD, t.p("b").c_str(), RENAME_NOREPLACE));
        t.rc("noreplace new", ::renameat2(AT_FDCWD, t.p("a").c_str(), AT_FDCWD, t.p("c").c_str(), RENAME_NOREPLACE));
        t.rc("exchange", ::renameat2(AT_FDCWD, t.p("b").c_str(), AT_FDCWD, t.p("c").c_str(), RENAME_EXCHANGE));
        t.content("b");
        t.content("c");
        t.rc("exchange file and dir", ::renameat2(AT_FDCWD, t.p("b").c_str(), AT_FDCWD, t.p("d").c_str(), RENAME_EXCHANGE));
        t.stat("b");
        t.stat("d");
        t.rc("exchange missing", ::renameat2(AT_FDCWD, t.p("c").c_str(), AT_FDCWD, t.p("zz").c_str(), RENAME_EXCHANGE));
        t.rc("both flags", ::renameat2(AT_FDCWD, t.p("c").c_str(), AT_FDCWD, t.p("b").c_str(),
                                       RENAME_EXCHANGE | RENAME_NOREPLACE));
        t.rc("rename over", ::rename(t.p("c").c_str(), t.p("d").c_str()));
        t.content("d");
        t.rc("rename to same", ::rename(t.p("d").c_str(), t.p("d").c_str()));
        t.list("");
    });
}

TEST(Semantics, HardlinksAndSymlinks) {
    compare([](Transcript& t) {
        t.put("f", "content");
        t.rc("link", ::link(t.p("f").c_str(), t.p("g").c_str()));
        t.rc("link2", ::link(t.p("g").c_str(), t.p("h").c_str()));
        t.stat("f");
        t.rc("unlink f", ::unlink(t.p("f").c_str()));
        t.stat("g");
        t.content("h");
        t.rc("symlink", ::symlink("g", t.p("s").c_str()));
        t.rc("dangling", ::symlink("nowhere/x", t.p("dang").c_str()));
        char buf[64] = {};
        t.rc("readlink", ::readlink(t.p("s").c_str(), buf, sizeof buf));
        t.note(buf);
        t.content("s");
        t.content("dang");
        t.stat("s");
        t.rc("link to symlink", ::link(t.p("s").c_str(), t.p("s2").c_str()));
        t.stat("s2");
        t.rc("lchown symlink", ::lchown(t.p("s").c_str(), 7, 8));
        t.stat("s");
        t.rc("chmod through symlink", ::chmod(t.p("s").c_str(), 0600));
        t.stat("g");
        t.rc("mkdir d", ::mkdir(t.p("d").c_str(), 0755));
        t.rc("symlink to dir", ::symlink("d", t.p("ds").c_str()));
        t.put("ds/through", "y");
        t.list("d");
    });
}

TEST(Semantics, SparseFilesAndSeek) {
    compare([](Transcript& t) {
        int fd = static_cast<int>(t.ok("create", ::open(t.p("sparse").c_str(), O_RDWR | O_CREAT, 0644)));
        std::string block(4096, 'x');
        t.rc("pwrite 0", ::pwrite(fd, block.data(), block.size(), 0));
        t.rc("pwrite 1M", ::pwrite(fd, block.data(), block.size(), 1 << 20));
        t.rc("ftruncate 2M", ::ftruncate(fd, 2 << 20));
        t.rc("fsync", ::fsync(fd));
        t.rc("SEEK_DATA 0", ::lseek(fd, 0, SEEK_DATA));
        t.rc("SEEK_HOLE 0", ::lseek(fd, 0, SEEK_HOLE));
        t.rc("SEEK_DATA 4096", ::lseek(fd, 4096, SEEK_DATA));
        t.rc("SEEK_HOLE 1M", ::lseek(fd, 1 << 20, SEEK_HOLE));
        t.rc("SEEK_DATA 1M+4096", ::lseek(fd, (1 << 20) + 4096, SEEK_DATA));
        t.rc("SEEK_DATA past end", ::lseek(fd, 3 << 20, SEEK_DATA));
        t.rc("SEEK_END", ::lseek(fd, 0, SEEK_END));
        t.rc("SEEK_SET -1", ::lseek(fd, -1, SEEK_SET));
        struct stat st;
        ::fstat(fd, &st);
        t.note("blocks " + std::to_string(st.st_blocks));
        char c = 1;
        t.rc("pread hole", ::pread(fd, &c, 1, 5000));
        t.note("hole byte " + std::to_string(c));
        ::close(fd);
    });
}

TEST(Semantics, AppendAndTrunc) {
    compare([](Transcript& t) {
        t.put("f", "start");
        int a = static_cast<int>(t.ok("open append a", ::open(t.p("f").c_str(), O_WRONLY | O_APPEND)));
        int b = static_cast<int>(t.ok("open append b", ::open(t.p("f").c_str(), O_RDWR | O_APPEND)));
        t.rc("write a", ::write(a, "-a1", 3));
        t.rc("write b", ::write(b, "-b1", 3));
        t.rc("pwrite a at 0 still appends", ::pwrite(a, "-a2", 3, 0));
        t.rc("lseek b", ::lseek(b, 0, SEEK_CUR));
        ::close(a);
        ::close(b);
        t.content("f");
        int c = static_cast<int>(t.ok("open trunc", ::open(t.p("f").c_str(), O_WRONLY | O_TRUNC)));
        t.stat("f");
        t.rc("write", ::write(c, "new", 3));
        ::close(c);
        t.content("f");
        int rt = static_cast<int>(t.ok("open rdonly trunc", ::open(t.p("f").c_str(), O_RDONLY | O_TRUNC)));
        if (rt >= 0) ::close(rt);
        t.content("f");
        t.rc("truncate grow", ::truncate(t.p("f").c_str(), 10));
        t.stat("f");
        t.rc("truncate shrink", ::truncate(t.p("f").c_str(), 2));
        t.content("f");
        int w = static_cast<int>(t.ok("open wronly", ::open(t.p("f").c_str(), O_WRONLY)));
        char buf[4];
        t.rc("read wronly", ::read(w, buf, sizeof buf));
        ::close(w);
        int r = static_cast<int>(t.ok("open rdonly", ::open(t.p("f").c_str(), O_RDONLY)));
        t.rc("write rdonly", ::write(r, "x", 1));
        ::close(r);
    });
}

TEST(Semantics, SharedMmapWrites) {
    compare([](Transcript& t) {
        int fd = static_cast<int>(t.ok("create", ::open(t.p("m").c_str(), O_RDWR | O_CREAT, 0644)));
        t.rc("ftruncate", ::ftruncate(fd, 8192));
        void* p = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        t.note(p == MAP_FAILED ? "mmap failed" : "mmap ok");
        if (p != MAP_FAILED) {
            std::memcpy(static_cast<char*>(p) + 10, "mapped", 6);
            std::memcpy(static_cast<char*>(p) + 5000, "second", 6);
            t.rc("msync", ::msync(p, 8192, MS_SYNC));
            ::munmap(p, 8192);
        }
        char buf[7] = {};
        t.rc("pread", ::pread(fd, buf, 6, 5000));
        t.note(buf);
        ::close(fd);
        t.content("m");
        int ro = ::open(t.p("m").c_str(), O_RDONLY);
        void* q = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
        t.note(q == MAP_FAILED ? std::string("mmap rw of rdonly fd -> ") + strerrorname_np(errno) : "mapped");
        ::close(ro);
    });
}

TEST(Semantics, Xattrs) {
    compare([](Transcript& t) {
        t.put("f", "x");
        t.rc("setxattr", ::setxattr(t.p("f").c_str(), "user.a", "1", 1, 0));
        t.rc("setxattr create existing", ::setxattr(t.p("f").c_str(), "user.a", "2", 1, XATTR_CREATE));
        t.rc("setxattr replace missing", ::setxattr(t.p("f").c_str(), "user.b", "2", 1, XATTR_REPLACE));
        t.rc("setxattr replace", ::setxattr(t.p("f").c_str(), "user.a", "22", 2, XATTR_REPLACE));
        t.rc("setxattr trusted", ::setxattr(t.p("f").c_str(), "trusted.t", "tt", 2, 0));
        t.rc("setxattr security", ::setxattr(t.p("f").c_str(), "security.s", "ss", 2, 0));
        t.rc("setxattr bad namespace", ::setxattr(t.p("f").c_str(), "bogus.x", "1", 1, 0));
        t.rc("setxattr empty value", ::setxattr(t.p("f").c_str(), "user.empty", "", 0, 0));
        char buf[256] = {};
        t.rc("getxattr size", ::getxattr(t.p("f").c_str(), "user.a", nullptr, 0));
        t.rc("getxattr", ::getxattr(t.p("f").c_str(), "user.a", buf, sizeof buf));
        t.note(buf);
        t.rc("getxattr small", ::getxattr(t.p("f").c_str(), "user.a", buf, 1));
        t.rc("getxattr missing", ::getxattr(t.p("f").c_str(), "user.zz", buf, sizeof buf));
        ssize_t n = t.rc("listxattr", ::listxattr(t.p("f").c_str(), buf, sizeof buf));
        std::vector<std::string> names;
        for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(buf + i)) + 1) names.emplace_back(buf + i);
        std::sort(names.begin(), names.end());
        for (auto& s : names) t.note("name " + s);
        t.rc("listxattr small", ::listxattr(t.p("f").c_str(), buf, 2));
        t.rc("removexattr", ::removexattr(t.p("f").c_str(), "user.a"));
        t.rc("removexattr missing", ::removexattr(t.p("f").c_str(), "user.a"));
        t.rc("symlink", ::symlink("f", t.p("s").c_str()));
        t.rc("lsetxattr user on symlink", ::lsetxattr(t.p("s").c_str(), "user.x", "1", 1, 0));
        t.rc("lsetxattr trusted on symlink", ::lsetxattr(t.p("s").c_str(), "trusted.x", "1", 1, 0));
        t.rc("lgetxattr trusted on symlink", ::lgetxattr(t.p("s").c_str(), "trusted.x", buf, sizeof buf));
        t.rc("mkdir", ::mkdir(t.p("d").c_str(), 0755));
        t.rc("setxattr dir", ::setxattr(t.p("d").c_str(), "user.d", "dd", 2, 0));
        t.rc("getxattr dir", ::getxattr(t.p("d").c_str(), "user.d", buf, sizeof buf));
        // POSIX ACL: user 1234 gets rw- (xattr form of "u::rw-,u:1234:rw-,g::r--,m::rw-,o::r--").
        const unsigned char acl[] = {2, 0, 0, 0,  1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 6, 0, 0xd2, 4, 0, 0,
                                     4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff, 0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
                                     0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff};
        t.rc("set acl", ::setxattr(t.p("f").c_str(), "system.posix_acl_access", acl, sizeof acl, 0));
        t.rc("get acl", ::getxattr(t.p("f").c_str(), "system.posix_acl_access", buf, sizeof buf));
        t.stat("f");
    });
}

TEST(Semantics, Fallocate) {
    compare([](Transcript& t) {
        int fd = static_cast<int>(t.ok("create", ::open(t.p("f").c_str(), O_RDWR | O_CREAT, 0644)));
        std::string data(16384, 'd');
        for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + (i / 4096));
        t.rc("write", ::write(fd, data.data(), data.size()));
        t.rc("alloc extend", ::fallocate(fd, 0, 16384, 4096));
        t.rc("keep size", ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 20480, 8192));
        t.rc("punch", ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096));
        t.rc("punch without keep", ::fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 10));
        t.rc("zero range", ::fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 200));
        t.rc("bad mode", ::fallocate(fd, 0x4000, 0, 4096));
        t.rc("fsync", ::fsync(fd));
        ::close(fd);
        t.stat("f");
        t.content("f");
        int ro = ::open(t.p("f").c_str(), O_RDONLY);
        t.rc("fallocate rdonly", ::fallocate(ro, 0, 0, 4096));
        ::close(ro);
    });
}

// The FUSE protocol forwards only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE: the kernel answers
// COLLAPSE_RANGE and INSERT_RANGE itself with EOPNOTSUPP (documented in docs/fs.md).
TEST(Semantics, FallocateModesTheKernelDoesNotForward) {
    InProcessMount m;
    m.start();
    int fd = ::open(m.at("f").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 65536), 0);
    EXPECT_EQ(::fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 8192, 4096), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    EXPECT_EQ(::fallocate(fd, FALLOC_FL_INSERT_RANGE, 0, 4096), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
    ::close(fd);
}

TEST(Semantics, CopyFileRange) {
    compare([](Transcript& t) {
        std::string data(100000, 'q');
        for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
        t.put("src", data);
        int in = static_cast<int>(t.ok("open src", ::open(t.p("src").c_str(), O_RDONLY)));
        int out = static_cast<int>(t.ok("open dst", ::open(t.p("dst").c_str(), O_RDWR | O_CREAT, 0644)));
        loff_t oi = 1000, oo = 50;
        t.rc("copy", ::copy_file_range(in, &oi, out, &oo, 70000, 0));
        t.note("offsets " + std::to_string(oi) + " " + std::to_string(oo));
        t.rc("copy past eof", ::copy_file_range(in, nullptr, out, nullptr, 10, 0));
        loff_t big = 200000;
        t.rc("copy from beyond eof", ::copy_file_range(in, &big, out, nullptr, 10, 0));
        t.rc("copy bad flags", ::copy_file_range(in, nullptr, out, nullptr, 10, 1));
        t.rc("copy to rdonly", ::copy_file_range(out, nullptr, in, nullptr, 10, 0));
        ::close(in);
        ::close(out);
        t.content("dst");
    });
}

TEST(Semantics, UtimensNowAndOmit) {
    compare([](Transcript& t) {
        t.put("f", "x");
        struct timespec set[2] = {{1000000, 5}, {2000000, 7}};
        t.rc("utimensat explicit", ::utimensat(AT_FDCWD, t.p("f").c_str(), set, 0));
        struct timespec omit_m[2] = {{3000000, 0}, {0, UTIME_OMIT}};
        t.rc("utimensat mtime omit", ::utimensat(AT_FDCWD, t.p("f").c_str(), omit_m, 0));
        struct stat st;
        ::stat(t.p("f").c_str(), &st);
        t.note("atime " + std::to_string(st.st_atim.tv_sec) + "." + std::to_string(st.st_atim.tv_nsec) + " mtime " +
               std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec));
        struct timespec now_a[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
        time_t before = ::time(nullptr);
        t.rc("utimensat atime now", ::utimensat(AT_FDCWD, t.p("f").c_str(), now_a, 0));
        ::stat(t.p("f").c_str(), &st);
        t.note(std::string("atime recent ") + (st.st_atim.tv_sec >= before ? "yes" : "no") + " mtime " +
               std::to_string(st.st_mtim.tv_sec));
        t.rc("utimensat both now", ::utimensat(AT_FDCWD, t.p("f").c_str(), nullptr, 0));
        ::stat(t.p("f").c_str(), &st);
        t.note(std::string("mtime recent ") + (st.st_mtim.tv_sec >= before ? "yes" : "no"));
        t.rc("symlink", ::symlink("f", t.p("s").c_str()));
        t.rc("utimensat nofollow", ::utimensat(AT_FDCWD, t.p("s").c_str(), set, AT_SYMLINK_NOFOLLOW));
        ::lstat(t.p("s").c_str(), &st);
        t.note("symlink mtime " + std::to_string(st.st_mtim.tv_sec));
        ::stat(t.p("f").c_str(), &st);
        t.note(std::string("target mtime recent ") + (st.st_mtim.tv_sec >= before ? "yes" : "no"));
        struct timespec bad[2] = {{0, 2000000000}, {0, 0}};
        t.rc("utimensat bad nsec", ::utimensat(AT_FDCWD, t.p("f").c_str(), bad, 0));
    });
}

TEST(Semantics, ChmodChown) {
    compare([](Transcript& t) {
        t.put("f", "x");
        t.rc("chmod 4755", ::chmod(t.p("f").c_str(), 04755));
        t.stat("f");
        t.rc("chown", ::chown(t.p("f").c_str(), 1000, 1001));
        t.stat("f");  // set-user-ID cleared by chown
        t.rc("chown uid only", ::chown(t.p("f").c_str(), 1002, static_cast<gid_t>(-1)));
        t.stat("f");
        t.rc("chmod 2644", ::chmod(t.p("f").c_str(), 02644));
        t.stat("f");
        t.rc("mkdir", ::mkdir(t.p("d").c_str(), 0700));
        t.rc("chmod dir 1777", ::chmod(t.p("d").c_str(), 01777));
        t.stat("d");
        t.rc("mkdir sgid", ::mkdir(t.p("sg").c_str(), 02775));
        t.rc("chown sgid dir", ::chown(t.p("sg").c_str(), 0, 1234));
        t.stat("sg");
        t.put("sg/file", "y");
        t.stat("sg/file");
        t.rc("mkdir in sgid", ::mkdir(t.p("sg/sub").c_str(), 0755));
        t.stat("sg/sub");
        int fd = ::open(t.p("f").c_str(), O_RDWR);
        t.rc("fchmod", ::fchmod(fd, 0640));
        t.rc("fchown", ::fchown(fd, 5, 6));
        t.rc("ftruncate", ::ftruncate(fd, 100));
        ::close(fd);
        t.stat("f");
    });
}

// Runs `body` in a forked child with uid/gid 2000 and supplementary group 1234; its
// transcript lines come back through a pipe.
void as_user(Transcript& t, const std::function<void(Transcript&)>& body) {
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::close(pipefd[0]);
        gid_t groups[] = {1234};
        if (::setgroups(1, groups) != 0 || ::setresgid(2000, 2000, 2000) != 0 || ::setresuid(2000, 2000, 2000) != 0) {
            ::_exit(2);
        }
        Transcript child(t.root());
        body(child);
        std::string out;
        for (const auto& l : child.lines()) out += l + "\n";
        (void)!::write(pipefd[1], out.data(), out.size());
        ::_exit(0);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t start = 0;
    while (start < out.size()) {
        size_t nl = out.find('\n', start);
        t.note("user: " + out.substr(start, nl - start));
        start = nl + 1;
    }
}

TEST(Semantics, NonRootAccessWithDefaultPermissions) {
    compare(
        [](Transcript& t) {
            t.rc("mkdir pub", ::mkdir(t.p("pub").c_str(), 0777));
            t.rc("mkdir priv", ::mkdir(t.p("priv").c_str(), 0700));
            t.rc("mkdir grp", ::mkdir(t.p("grp").c_str(), 0770));
            t.rc("chown grp", ::chown(t.p("grp").c_str(), 0, 1234));
            t.rc("mkdir sg", ::mkdir(t.p("sg").c_str(), 02775));
            t.rc("chown sg", ::chown(t.p("sg").c_str(), 0, 1234));
            t.rc("mkdir sticky", ::mkdir(t.p("sticky").c_str(), 01777));
            t.put("sticky/rootfile", "r");
            t.put("ro", "readonly", 0644);
            t.put("grpfile", "g", 0660);
            t.rc("chown grpfile", ::chown(t.p("grpfile").c_str(), 0, 1234));
            t.put("secret", "s", 0600);
            as_user(t, [](Transcript& u) {
                u.opened("open ro for read", ::open(u.p("ro").c_str(), O_RDONLY));
                u.opened("open ro for write", ::open(u.p("ro").c_str(), O_WRONLY));
                u.opened("open secret", ::open(u.p("secret").c_str(), O_RDONLY));
                u.rc("access ro R", ::access(u.p("ro").c_str(), R_OK));
                u.rc("access ro W", ::access(u.p("ro").c_str(), W_OK));
                u.rc("access ro X", ::access(u.p("ro").c_str(), X_OK));
                u.rc("access pub W", ::access(u.p("pub").c_str(), W_OK));
                u.rc("access grp W (supplementary group)", ::access(u.p("grp").c_str(), W_OK | X_OK));
                u.opened("create in priv", ::open(u.p("priv/x").c_str(), O_WRONLY | O_CREAT, 0644));
                u.put("pub/mine", "m");
                u.stat("pub/mine");
                u.rc("mkdir in pub", ::mkdir(u.p("pub/dir").c_str(), 0755));
                u.stat("pub/dir");
                u.rc("symlink in pub", ::symlink("mine", u.p("pub/sl").c_str()));
                u.stat("pub/sl");
                u.rc("mkfifo in pub", ::mkfifo(u.p("pub/fifo").c_str(), 0644));
                u.stat("pub/fifo");
                u.put("grp/viagroup", "g");
                u.stat("grp/viagroup");
                u.put("sg/inherit", "i");
                u.stat("sg/inherit");
                u.rc("mkdir in sg", ::mkdir(u.p("sg/subdir").c_str(), 0755));
                u.stat("sg/subdir");
                u.put("grpfile", "written");
                u.rc("chmod other's file", ::chmod(u.p("ro").c_str(), 0666));
                u.rc("chown own file", ::chown(u.p("pub/mine").c_str(), 0, 0));
                u.rc("chgrp own file to supplementary", ::chown(u.p("pub/mine").c_str(), static_cast<uid_t>(-1), 1234));
                u.stat("pub/mine");
                u.rc("chmod own file", ::chmod(u.p("pub/mine").c_str(), 0600));
                u.rc("unlink in sticky", ::unlink(u.p("sticky/rootfile").c_str()));
                u.rc("rename from sticky", ::rename(u.p("sticky/rootfile").c_str(), u.p("pub/stolen").c_str()));
                u.rc("utimens now on writable file", ::utimensat(AT_FDCWD, u.p("grpfile").c_str(), nullptr, 0));
                struct timespec ts[2] = {{1, 0}, {1, 0}};
                u.rc("utimens explicit on other's file", ::utimensat(AT_FDCWD, u.p("grpfile").c_str(), ts, 0));
                u.rc("truncate other's ro file", ::truncate(u.p("ro").c_str(), 0));
                u.rc("setxattr user on other's file", ::setxattr(u.p("ro").c_str(), "user.x", "1", 1, 0));
                u.rc("setxattr trusted", ::setxattr(u.p("pub/mine").c_str(), "trusted.x", "1", 1, 0));
                u.rc("unlink own", ::unlink(u.p("pub/mine").c_str()));
                u.rc("rmdir priv", ::rmdir(u.p("priv").c_str()));
                u.list("pub");
            });
        },
        {"allow_other"});
}

// Set-ID bits: a write, truncate, truncating open or fallocate by a caller without
// CAP_FSETID clears S_ISUID, and S_ISGID when group-execute is set or the caller is not in
// the file's group; root keeps them. Through the mount the daemon clears them itself
// (FUSE_HANDLE_KILLPRIV_V2, docs/fs.md); the modes seen right after must be native ones.
// `root_chown`: without the writeback cache the kernel sends root's chown(f, -1, -1) as a
// SETATTR with nothing in it, which syncfs cannot tell from root's write into a file with
// a capability (docs/fs.md); only the writeback variant checks it.
void setid_scenario(Transcript& t, bool root_chown) {
    auto setid = [&](const std::string& name, mode_t mode, gid_t gid) {
        t.put(name, "0123456789", 0644);
        t.rc("chown " + name, ::chown(t.p(name).c_str(), 0, gid));
        t.rc("chmod " + name, ::chmod(t.p(name).c_str(), mode));
        t.stat(name);
    };
    setid("suid", 04666, 0);
    setid("sgid-x", 02676, 0);
    setid("sgid-nox-other", 02666, 0);
    setid("sgid-nox-member", 02666, 1234);
    setid("trunc", 04666, 0);
    setid("otrunc", 06676, 0);
    setid("falloc", 04666, 0);
    setid("cfr", 04666, 0);
    setid("root", 06676, 0);
    setid("chown-root", 06666, 0);
    if (root_chown) {
        t.rc("root chown -1 -1", ::chown(t.p("chown-root").c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1)));
        t.stat("chown-root");
    }
    setid("chown-user", 06766, 0);
    t.rc("chown chown-user", ::chown(t.p("chown-user").c_str(), 2000, 0));
    t.rc("chmod chown-user", ::chmod(t.p("chown-user").c_str(), 06766));
    int fd = ::open(t.p("root").c_str(), O_WRONLY);
    t.rc("root write", ::pwrite(fd, "r", 1, 0));
    ::close(fd);
    t.stat("root");
    t.rc("root truncate", ::truncate(t.p("root").c_str(), 5));
    t.stat("root");
    as_user(t, [](Transcript& u) {
        for (const char* name : {"suid", "sgid-x", "sgid-nox-other", "sgid-nox-member"}) {
            int wfd = ::open(u.p(name).c_str(), O_WRONLY);
            u.rc(std::string("write ") + name, ::pwrite(wfd, "ab", 2, 0));
            u.stat(name);
            u.rc(std::string("write again ") + name, ::pwrite(wfd, "cd", 2, 2));
            ::close(wfd);
            u.stat(name);
        }
        u.rc("truncate", ::truncate(u.p("trunc").c_str(), 3));
        u.stat("trunc");
        u.opened("open O_TRUNC", ::open(u.p("otrunc").c_str(), O_WRONLY | O_TRUNC));
        u.stat("otrunc");
        int ffd = ::open(u.p("falloc").c_str(), O_WRONLY);
        u.rc("fallocate", ::fallocate(ffd, 0, 0, 8192));
        ::close(ffd);
        u.stat("falloc");
        int in = ::open(u.p("sgid-nox-member").c_str(), O_RDONLY);
        int out = ::open(u.p("cfr").c_str(), O_WRONLY);
        loff_t in_off = 0, out_off = 2;
        u.rc("copy_file_range", ::copy_file_range(in, &in_off, out, &out_off, 3, 0));
        ::close(in);
        ::close(out);
        u.stat("cfr");
        u.rc("owner chown -1 -1", ::chown(u.p("chown-user").c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(-1)));
        u.stat("chown-user");
    });
    for (const char* name :
         {"suid", "sgid-x", "sgid-nox-other", "sgid-nox-member", "trunc", "otrunc", "falloc", "cfr", "root", "chown-root",
          "chown-user"}) {
        t.stat(name);
        t.content(name);
    }
}

TEST(Semantics, SetIdBitsAfterUnprivilegedWrites) {
    compare([](Transcript& t) { setid_scenario(t, true); }, {"allow_other"});
}

TEST(Semantics, SetIdBitsAfterUnprivilegedWritesNoWriteback) {
    compare([](Transcript& t) { setid_scenario(t, false); }, {"allow_other", "no_writeback"});
}

// fstat of an open fd, in transcript form (no inode numbers or times).
void fstat_note(Transcript& t, const std::string& what, int fd) {
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        t.note("fstat " + what + " -> " + strerrorname_np(errno));
        return;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "fstat %s -> mode=%o nlink=%lu uid=%u gid=%u size=%lld", what.c_str(), st.st_mode,
                  static_cast<unsigned long>(st.st_nlink), st.st_uid, st.st_gid, static_cast<long long>(st.st_size));
    t.note(buf);
}

std::string proc_fd(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// open(dir, O_TMPFILE) (FUSE_TMPFILE, docs/fs.md "O_TMPFILE"): an unnamed file that can be
// written, read, changed and linked in under a name, or dropped without a trace.
void tmpfile_scenario(Transcript& t) {
    t.rc("mkdir d", ::mkdir(t.p("d").c_str(), 0755));
    int fd = static_cast<int>(t.ok("open O_TMPFILE|O_RDWR", ::open(t.p("d").c_str(), O_TMPFILE | O_RDWR, 0640)));
    t.rc("write", ::write(fd, "hello tmpfile", 13));
    t.rc("pwrite", ::pwrite(fd, "HELLO", 5, 0));
    char buf[32] = {};
    t.rc("pread", ::pread(fd, buf, sizeof buf, 0));
    t.note(std::string("read back '") + buf + "'");
    fstat_note(t, "tmpfile", fd);
    t.list("d");
    t.rc("linkat /proc/self/fd", ::linkat(AT_FDCWD, proc_fd(fd).c_str(), AT_FDCWD, t.p("d/named").c_str(), AT_SYMLINK_FOLLOW));
    fstat_note(t, "linked tmpfile", fd);
    t.rc("write after link", ::pwrite(fd, "!", 1, 13));
    t.rc("linkat again", ::linkat(AT_FDCWD, proc_fd(fd).c_str(), AT_FDCWD, t.p("d/named").c_str(), AT_SYMLINK_FOLLOW));
    ::close(fd);
    t.stat("d/named");
    t.content("d/named");

    // O_EXCL: never linkable.
    fd = static_cast<int>(t.ok("open O_TMPFILE|O_EXCL", ::open(t.p("d").c_str(), O_TMPFILE | O_EXCL | O_WRONLY, 0600)));
    t.rc("write excl", ::write(fd, "x", 1));
    t.rc("linkat excl", ::linkat(AT_FDCWD, proc_fd(fd).c_str(), AT_FDCWD, t.p("d/excl").c_str(), AT_SYMLINK_FOLLOW));
    t.rc("linkat excl AT_EMPTY_PATH", ::linkat(fd, "", AT_FDCWD, t.p("d/excl").c_str(), AT_EMPTY_PATH));
    ::close(fd);

    // linkat(AT_EMPTY_PATH), after the file was changed while anonymous; write-only.
    fd = static_cast<int>(t.ok("open O_TMPFILE|O_WRONLY", ::open(t.p("d").c_str(), O_TMPFILE | O_WRONLY, 0666)));
    t.rc("ftruncate", ::ftruncate(fd, 10000));
    t.rc("pwrite at 9000", ::pwrite(fd, "tail", 4, 9000));
    t.rc("fchmod", ::fchmod(fd, 0604));
    fstat_note(t, "changed tmpfile", fd);
    t.rc("linkat AT_EMPTY_PATH", ::linkat(fd, "", AT_FDCWD, t.p("d/empty-path").c_str(), AT_EMPTY_PATH));
    ::close(fd);
    t.stat("d/empty-path");
    t.content("d/empty-path");

    // Linked in after its last open fd closed, through an O_PATH fd.
    fd = ::open(t.p("d").c_str(), O_TMPFILE | O_RDWR, 0600);
    t.rc("write late", ::write(fd, "late", 4));
    int opath = static_cast<int>(t.ok("open O_PATH of tmpfile", ::open(proc_fd(fd).c_str(), O_PATH)));
    ::close(fd);
    fstat_note(t, "O_PATH of a closed tmpfile", opath);
    t.rc("linkat O_PATH", ::linkat(opath, "", AT_FDCWD, t.p("d/late").c_str(), AT_EMPTY_PATH));
    ::close(opath);
    t.content("d/late");

    // Dropped without a link: nothing remains.
    fd = ::open(t.p("d").c_str(), O_TMPFILE | O_RDWR, 0600);
    t.rc("write dropped", ::write(fd, "gone", 4));
    ::close(fd);

    // Errors: no write access mode, not a directory, missing directory.
    t.opened("O_TMPFILE|O_RDONLY", ::open(t.p("d").c_str(), O_TMPFILE | O_RDONLY, 0600));
    t.opened("O_TMPFILE on a file", ::open(t.p("d/named").c_str(), O_TMPFILE | O_RDWR, 0600));
    t.opened("O_TMPFILE in a missing dir", ::open(t.p("nope").c_str(), O_TMPFILE | O_RDWR, 0600));
    t.list("d");
}

TEST(Semantics, Tmpfile) { compare(tmpfile_scenario); }

TEST(Semantics, TmpfileNoWriteback) { compare(tmpfile_scenario, {"no_writeback"}); }

// Every stat asks the daemon, also after the last handle closed (the O_PATH case).
TEST(Semantics, TmpfileNoCache) { compare(tmpfile_scenario, {"timeout=0"}); }

// A non-root caller: the tmpfile is its own (group inherited in a set-group-ID directory),
// and a directory it cannot write refuses it.
TEST(Semantics, TmpfileAsNonRootUser) {
    compare(
        [](Transcript& t) {
            t.rc("mkdir pub", ::mkdir(t.p("pub").c_str(), 0777));
            t.rc("mkdir ro", ::mkdir(t.p("ro").c_str(), 0755));
            t.rc("mkdir sg", ::mkdir(t.p("sg").c_str(), 02775));
            t.rc("chown sg", ::chown(t.p("sg").c_str(), 0, 1234));
            as_user(t, [](Transcript& u) {
                int fd = static_cast<int>(u.ok("tmpfile in pub", ::open(u.p("pub").c_str(), O_TMPFILE | O_RDWR, 0640)));
                u.rc("write", ::write(fd, "mine", 4));
                fstat_note(u, "pub tmpfile", fd);
                u.rc("linkat", ::linkat(AT_FDCWD, proc_fd(fd).c_str(), AT_FDCWD, u.p("pub/mine").c_str(), AT_SYMLINK_FOLLOW));
                ::close(fd);
                u.stat("pub/mine");
                u.content("pub/mine");
                u.opened("tmpfile in ro", ::open(u.p("ro").c_str(), O_TMPFILE | O_RDWR, 0600));
                fd = static_cast<int>(u.ok("tmpfile in sg", ::open(u.p("sg").c_str(), O_TMPFILE | O_RDWR, 02750)));
                fstat_note(u, "sg tmpfile", fd);
                u.rc("linkat sg", ::linkat(AT_FDCWD, proc_fd(fd).c_str(), AT_FDCWD, u.p("sg/inherit").c_str(), AT_SYMLINK_FOLLOW));
                ::close(fd);
                u.stat("sg/inherit");
            });
            t.list("pub");
            t.list("ro");
            t.list("sg");
        },
        {"allow_other"});
}

TEST(Semantics, ODirect) {
    compare([](Transcript& t) {
        void* buf = nullptr;
        ASSERT_EQ(::posix_memalign(&buf, 4096, 65536), 0);
        std::memset(buf, 'D', 65536);
        int fd = static_cast<int>(t.ok("open O_DIRECT", ::open(t.p("f").c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644)));
        t.rc("write aligned", ::pwrite(fd, buf, 65536, 0));
        t.rc("write aligned 2", ::pwrite(fd, buf, 4096, 65536));
        std::memset(buf, 0, 65536);
        t.rc("read aligned", ::pread(fd, buf, 65536, 4096));
        t.note(std::string("byte ") + static_cast<char*>(buf)[0]);
        ::close(fd);
        std::free(buf);
        t.stat("f");
        t.content("f");
    });
}

TEST(Semantics, DirectoryListing) {
    compare([](Transcript& t) {
        t.rc("mkdir", ::mkdir(t.p("d").c_str(), 0755));
        for (int i = 0; i < 600; ++i) {
            int fd = ::open(t.p("d/file-with-a-longish-name-" + std::to_string(i)).c_str(), O_WRONLY | O_CREAT, 0644);
            ::close(fd);
        }
        t.list("d");
        for (int i = 0; i < 600; i += 2) ::unlink(t.p("d/file-with-a-longish-name-" + std::to_string(i)).c_str());
        t.list("d");
        // Removing entries while iterating must not lose the others.
        DIR* d = ::opendir(t.p("d").c_str());
        int seen = 0;
        while (struct dirent* e = ::readdir(d)) {
            if (e->d_name[0] != '.') {
                ++seen;
                ::unlinkat(::dirfd(d), e->d_name, 0);
            }
        }
        ::closedir(d);
        t.note("seen " + std::to_string(seen));
        t.list("d");
        struct statvfs sv;
        t.rc("statvfs", ::statvfs(t.p("d").c_str(), &sv));
    });
}

}  // namespace
}  // namespace sfs::fs::test

namespace sfs::fs::test {
namespace {

// Reads `rel` through a mount with `options` after setting SOURCE's atime older than its
// mtime (so relatime would update it); returns SOURCE's atime afterwards.
time_t atime_after_read(const std::vector<std::string>& options) {
    InProcessMount m(options);
    int fd = ::open(m.src("f").c_str(), O_WRONLY | O_CREAT, 0644);
    (void)!::write(fd, "data", 4);
    ::close(fd);
    struct timespec ts[2] = {{1000, 0}, {0, UTIME_OMIT}};
    ::utimensat(AT_FDCWD, m.src("f").c_str(), ts, 0);
    m.start();
    char buf[8];
    fd = ::open(m.at("f").c_str(), O_RDONLY);
    EXPECT_EQ(::read(fd, buf, sizeof buf), 4);
    ::close(fd);
    m.stop();
    struct stat st;
    ::stat(m.src("f").c_str(), &st);
    return st.st_atim.tv_sec;
}

TEST(MountFlags, NoatimeLeavesSourceAtimeAlone) {
    EXPECT_EQ(atime_after_read({"noatime"}), 1000);
    EXPECT_GT(atime_after_read({}), 1000);  // relatime (SOURCE's default) updates it
}

TEST(MountFlags, ReadOnlyRefusesWrites) {
    InProcessMount m({"ro"});
    m.start();
    EXPECT_EQ(::open(m.at("f").c_str(), O_WRONLY | O_CREAT, 0644), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_EQ(::mkdir(m.at("d").c_str(), 0755), -1);
    EXPECT_EQ(errno, EROFS);
    EXPECT_TRUE(m.sink().take().empty());
}

}  // namespace
}  // namespace sfs::fs::test
