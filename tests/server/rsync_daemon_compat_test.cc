// syncfsd standing in for `rsync --daemon` the way rsync's own testsuite drives it
// (testsuite/rsync.fns build_rsyncd_conf, daemon.test, daemon-gzip-download/upload.test):
// the same rsyncd.conf (global `exclude`, `transfer logging`, `log format`,
// `max verbosity`, an unlisted module), started as RSYNC_CONNECT_PROG
// "syncfsd --config=F --daemon", over a remote shell as "--server --daemon .", and as a
// listening `--daemon --no-detach --port`. Written by us; the client is the real rsync.
#include <sys/stat.h>
#include <sys/time.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "daemon_harness.h"

namespace sfs::test {
namespace {

namespace fs = std::filesystem;

// The testsuite's configuration, with our temp paths.
std::string testsuite_conf(const TempDir& dir) {
    return "pid file = " + (dir / "rsyncd.pid") + "\n"
           "use chroot = no\n"
           "munge symlinks = no\n"
           "hosts allow = localhost 127.0.0.0/8\n"
           "log file = " + (dir / "rsyncd.log") + "\n"
           "transfer logging = yes\n"
           "exclude = ? foobar.baz\n"
           "max verbosity = 4\n"
           "uid = 0\n"
           "gid = 0\n"
           "\n"
           "[test-from]\n"
           "\tpath = " + (dir / "from") + "\n"
           "\tlog format = %i %h [%a] %m (%u) %l %f%L\n"
           "\tread only = yes\n"
           "\tcomment = r/o\n"
           "\n"
           "[test-to]\n"
           "\tpath = " + (dir / "to") + "\n"
           "\tlog format = %i %h [%a] %m (%u) %l %f%L\n"
           "\tread only = no\n"
           "\tcomment = r/w\n"
           "\n"
           "[test-scratch]\n"
           "\tpath = " + dir.path() + "\n"
           "\tlog format = %i %h [%a] %m (%u) %l %f%L\n"
           "\tread only = no\n"
           "\n"
           "[test-hidden]\n"
           "\tpath = " + (dir / "from") + "\n"
           "\tlist = no\n";
}

class RsyncDaemonCompat : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(dir_ / "from/foo");
        fs::create_directories(dir_ / "from/bar/baz");
        fs::create_directories(dir_ / "to");
        write_file(dir_ / "from/foo/one", "one\n");
        write_file(dir_ / "from/bar/two", "two\n");
        write_file(dir_ / "from/bar/baz/three", "three\n");
        conf_ = dir_ / "test-rsyncd.conf";
        write_file(conf_, testsuite_conf(dir_));
    }

    // rsync with syncfsd as its RSYNC_CONNECT_PROG, exactly as the testsuite sets it.
    RunResult rsync(const std::string& args) {
        return run("env RSYNC_CONNECT_PROG='" + std::string(SYNCFSD_BIN) + " --config=" + conf_ + " --daemon' rsync " + args);
    }

    // The hands_setup() tree, trimmed: files, an empty file and dir, a symlink, the file
    // the global exclude names, and a one-character name ("?" excludes it).
    void hands_tree() {
        fs::create_directories(dir_ / "from/emptydir");
        fs::create_directories(dir_ / "from/dir/subdir/subsubdir");
        write_file(dir_ / "from/empty", "");
        std::string text;
        for (int i = 0; i < 4000; ++i) text += "line " + std::to_string(i) + " of some text to compress\n";
        write_file(dir_ / "from/text", text);
        write_file(dir_ / "from/dir/text", text);
        write_file(dir_ / "from/nolf", "This file has no trailing lf");
        fs::create_symlink("nolf", dir_ / "from/nolf-symlink");
        write_file(dir_ / "from/dir/subdir/foobar.baz", "some data\n");
        write_file(dir_ / "from/dir/subdir/subsubdir/etc-ltr-list", text.substr(0, 5000));
        write_file(dir_ / "from/x", "one-character name\n");
    }

    // The reference tree: a local rsync with the daemon's exclude rules.
    void make_reference() {
        auto r = run("rsync -a --exclude=foobar.baz --exclude='?' " + (dir_ / "from/") + " " + (dir_ / "chk/"));
        ASSERT_EQ(r.status, 0) << r.output;
    }

    void expect_same(const std::string& a, const std::string& b) {
        auto d = run("diff -r --no-dereference " + a + " " + b);
        EXPECT_EQ(d.status, 0) << d.output;
        // Times and modes as rsync_ls_lR compares them (symlink times are not compared).
        for (auto it = fs::recursive_directory_iterator(a); it != fs::recursive_directory_iterator(); ++it) {
            std::string rel = it->path().lexically_relative(a).string();
            struct stat sa {}, sb {};
            ASSERT_EQ(::lstat(it->path().c_str(), &sa), 0);
            ASSERT_EQ(::lstat((b + "/" + rel).c_str(), &sb), 0) << rel;
            EXPECT_EQ(sa.st_mode, sb.st_mode) << rel;
            if (!S_ISLNK(sa.st_mode)) {
                EXPECT_EQ(sa.st_mtime, sb.st_mtime) << rel;
            }
        }
    }

    TempDir dir_;
    std::string conf_;
};

// The set of paths an `rsync -r host::mod` listing shows (last column).
std::set<std::string> listed_paths(const std::string& out) {
    std::set<std::string> paths;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::vector<std::string> w;
        for (std::string x; words >> x;) w.push_back(x);
        if (w.size() >= 5 && w[0].size() == 10 && std::string("-dlbcps").find(w[0][0]) != std::string::npos)
            paths.insert(w.back());
    }
    return paths;
}

constexpr const char* kModuleList =
    "test-from      \tr/o\n"
    "test-to        \tr/w\n"
    "test-scratch   \t\n";

// daemon.test: the listing shows the three listed modules, padded to 15, never test-hidden.
TEST_F(RsyncDaemonCompat, ModuleListingViaConnectProg) {
    auto r = rsync("-v localhost::");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(kModuleList), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("test-hidden"), std::string::npos) << r.output;
}

// daemon.test over lsh.sh: `rsync -e RSH --rsync-path="syncfsd --config=F" localhost::`
// runs "syncfsd --config=F --server --daemon ." on the pipes of a remote shell.
TEST_F(RsyncDaemonCompat, ModuleListingOverRemoteShell) {
    std::string rsh = dir_ / "lsh.sh";
    write_file(rsh,
               "#!/bin/sh\n"
               "while [ $# -gt 0 ]; do case \"$1\" in localhost) shift; break;; *) shift;; esac; done\n"
               "eval \"$@\"\n",
               0755);
    auto r = run("rsync -ve " + rsh + " --rsync-path='" + std::string(SYNCFSD_BIN) + " --config=" + conf_ +
                 "' localhost::");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(kModuleList), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("test-hidden"), std::string::npos) << r.output;
}

// An unlisted module is still served by name; the recursive listing shows exactly the tree.
TEST_F(RsyncDaemonCompat, HiddenModuleRecursiveListing) {
    auto r = rsync("-r localhost::test-hidden");
    ASSERT_EQ(r.status, 0) << r.output;
    std::set<std::string> want{".", "bar", "bar/two", "bar/baz", "bar/baz/three", "foo", "foo/one"};
    EXPECT_EQ(listed_paths(r.output), want) << r.output;
}

// Wildcards in a pull's path argument are expanded by the daemon (glob_expand), beneath
// the module; a pattern matching nothing is reported missing (exit 23).
TEST_F(RsyncDaemonCompat, WildcardPullArguments) {
    auto r = rsync("-r 'localhost::test-from/f*'");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(listed_paths(r.output), (std::set<std::string>{"foo", "foo/one"})) << r.output;

    r = rsync("-r 'localhost::test-from/*/t*'");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(listed_paths(r.output), (std::set<std::string>{"two"})) << r.output;  // bar/two only

    r = rsync("-r 'localhost::test-from/nothing*'");
    EXPECT_EQ(r.status, 23) << r.output;

    // A wildcard cannot climb out of the module: ".." is dropped before expansion.
    r = rsync("-r 'localhost::test-from/../*'");
    EXPECT_EQ(listed_paths(r.output).count("test-rsyncd.conf"), 0u) << r.output;
}

// -U (atimes): the listing shows an access-time column and a pull keeps the access times.
TEST_F(RsyncDaemonCompat, AccessTimes) {
    struct timeval tv[2] = {{1000000000, 0}, {1100000000, 0}};
    ASSERT_EQ(::utimes((dir_ / "from/foo/one").c_str(), tv), 0);
    auto r = rsync("-rU 'localhost::test-from/f*'");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(listed_paths(r.output), (std::set<std::string>{"foo", "foo/one"})) << r.output;
    EXPECT_NE(r.output.find("2001/09/"), std::string::npos) << r.output;  // atime 1000000000

    r = rsync("-rtU localhost::test-from/foo/ " + (dir_ / "pulled/"));
    ASSERT_EQ(r.status, 0) << r.output;
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / "pulled/one").c_str(), &st), 0);
    EXPECT_EQ(st.st_atime, 1000000000);
    EXPECT_EQ(st.st_mtime, 1100000000);
}

// daemon-gzip-download.test: -avvvvzz (zlibx: --new-compress) pull; the daemon's global
// `exclude = ? foobar.baz` keeps foobar.baz and one-character names out of the list.
TEST_F(RsyncDaemonCompat, GzipDownloadHonoursDaemonExclude) {
    hands_tree();
    make_reference();
    auto r = rsync("-avvvvzz localhost::test-from/ " + (dir_ / "to/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("--new-compress"), std::string::npos) << "client did not ask for zlibx";
    EXPECT_FALSE(fs::exists(dir_ / "to/dir/subdir/foobar.baz"));
    EXPECT_FALSE(fs::exists(dir_ / "to/x"));
    expect_same(dir_ / "chk", dir_ / "to");
    // Naming an excluded file is the same as naming a missing one.
    r = rsync("-a localhost::test-from/dir/subdir/foobar.baz " + (dir_ / "single"));
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_NE(r.output.find("No such file or directory"), std::string::npos) << r.output;
}

// daemon-gzip-upload.test: -avvvvzz push; the daemon refuses foobar.baz (exit 23, the
// client prints "daemon refused to receive"), everything else arrives.
TEST_F(RsyncDaemonCompat, GzipUploadRefusesDaemonExcluded) {
    hands_tree();
    make_reference();
    auto r = rsync("-avvvvzz " + (dir_ / "from/") + " localhost::test-to/");
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_NE(r.output.find("daemon refused to receive file \"dir/subdir/foobar.baz\""), std::string::npos) << r.output;
    expect_same(dir_ / "chk", dir_ / "to");

    // Delta update with -zz: change the text, push again.
    write_file(dir_ / "from/text", read_file(dir_ / "from/text") + "appended\n");
    r = rsync("-azz --stats " + (dir_ / "from/text") + " localhost::test-to/text");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/text"), read_file(dir_ / "from/text"));

    // --delete never removes a daemon-excluded file on the module side.
    write_file(dir_ / "to/dir/subdir/foobar.baz", "server's own\n");
    write_file(dir_ / "to/stray", "deleted\n");
    r = rsync("-a --delete " + (dir_ / "chk/") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(fs::exists(dir_ / "to/dir/subdir/foobar.baz"));
    EXPECT_FALSE(fs::exists(dir_ / "to/stray"));
}

// `transfer logging` with the testsuite's `log format = %i %h [%a] %m (%u) %l %f%L`.
TEST_F(RsyncDaemonCompat, TransferLogFormat) {
    auto r = rsync("-a localhost::test-from/foo/ " + (dir_ / "pulled/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(file_gets(dir_ / "rsyncd.log", "<f????????? ")) << read_file(dir_ / "rsyncd.log");
    EXPECT_TRUE(file_gets(dir_ / "rsyncd.log", "[127.0.0.1] test-from () 4 foo/one")) << read_file(dir_ / "rsyncd.log");

    r = rsync("-a " + (dir_ / "from/bar/two") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(file_gets(dir_ / "rsyncd.log", ">f????????? ")) << read_file(dir_ / "rsyncd.log");
    EXPECT_TRUE(file_gets(dir_ / "rsyncd.log", "test-to () 4 two")) << read_file(dir_ / "rsyncd.log");
}

// The --use-tcp mode of the testsuite: "syncfsd --daemon --no-detach --address=127.0.0.1
// --port=N --config=F" listens like rsyncd.
TEST_F(RsyncDaemonCompat, ListeningDaemonCommandLine) {
    int port = free_port();
    pid_t pid = ::fork();
    if (pid == 0) {
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 0);
        ::dup2(null, 1);
        ::dup2(null, 2);
        std::string p = "--port=" + std::to_string(port), c = "--config=" + conf_;
        ::execl(SYNCFSD_BIN, SYNCFSD_BIN, "--daemon", "--no-detach", "--address=127.0.0.1", p.c_str(), c.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ASSERT_GT(pid, 0);
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {
        int fd = connect_port(port);
        if (fd >= 0) {
            ::close(fd);
            up = true;
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    RunResult r;
    if (up) r = run("rsync -r rsync://localhost:" + std::to_string(port) + "/test-hidden");
    ::kill(pid, SIGTERM);
    int st = 0;
    ::waitpid(pid, &st, 0);
    ASSERT_TRUE(up) << "syncfsd --daemon did not listen";
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(listed_paths(r.output).count("foo/one"), 1u) << r.output;
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

// -b / --suffix / --backup-dir on a push: a replaced or deleted file is kept, inside the
// module; ".." in --backup-dir cannot climb out of it.
// (Names are longer than one character: the testsuite config's "exclude = ?" hides those.)
TEST_F(RsyncDaemonCompat, BackupOnPush) {
    fs::create_directories(dir_ / "src/sub");
    write_file(dir_ / "src/aa", "new aa\n");
    write_file(dir_ / "src/sub/bb", "new b\n");
    fs::create_directories(dir_ / "to/sub");
    write_file(dir_ / "to/aa", "old aa\n");
    write_file(dir_ / "to/sub/bb", "old b\n");
    write_file(dir_ / "to/gone", "old gone\n");

    auto r = rsync("-rI -b --delete " + (dir_ / "src/") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/aa"), "new aa\n");
    EXPECT_EQ(read_file(dir_ / "to/aa~"), "old aa\n");
    EXPECT_EQ(read_file(dir_ / "to/sub/bb~"), "old b\n");
    EXPECT_EQ(read_file(dir_ / "to/gone~"), "old gone\n");
    EXPECT_FALSE(fs::exists(dir_ / "to/gone"));

    write_file(dir_ / "src/aa", "newer a\n");
    write_file(dir_ / "src/sub/bb", "newer b\n");
    r = rsync("-rI --backup-dir=../../../old --suffix=.1 " + (dir_ / "src/") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/aa"), "newer a\n");
    EXPECT_EQ(read_file(dir_ / "to/old/aa.1"), "new aa\n");
    EXPECT_EQ(read_file(dir_ / "to/old/sub/bb.1"), "new b\n");
    EXPECT_FALSE(fs::exists(dir_ / "old")) << "--backup-dir escaped the module";

    // --inplace keeps a copy: the file itself is rewritten.
    write_file(dir_ / "src/aa", "newest a\n");
    r = rsync("-rI --inplace -b --suffix=.in " + (dir_ / "src/aa") + " localhost::test-to/aa");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/aa"), "newest a\n");
    EXPECT_EQ(read_file(dir_ / "to/aa.in"), "newer a\n");

    // A replaced symlink is backed up too.
    fs::create_symlink("old-target", dir_ / "to/lnk");
    fs::create_symlink("new-target", dir_ / "src/lnk");
    r = rsync("-rl --backup-dir=links " + (dir_ / "src/lnk") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(fs::read_symlink(dir_ / "to/lnk").string(), "new-target");
    EXPECT_EQ(fs::read_symlink(dir_ / "to/links/lnk").string(), "old-target");

    // A backup dir the module's exclude protects is refused (nothing is written there).
    write_file(dir_ / "src/aa", "excluded backup\n");
    r = rsync("-rI --backup-dir=foobar.baz " + (dir_ / "src/aa") + " localhost::test-to/aa");
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_FALSE(fs::exists(dir_ / "to/foobar.baz")) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/aa"), "newest a\n");

    // A backup dir that is a symlink out of the module is not followed.
    fs::create_directories(dir_ / "outside");
    fs::create_symlink(dir_ / "outside", dir_ / "to/evil");
    write_file(dir_ / "src/aa", "final a\n");
    r = rsync("-rI --backup-dir=evil " + (dir_ / "src/aa") + " localhost::test-to/aa");
    EXPECT_TRUE(fs::is_empty(dir_ / "outside")) << r.output;
}

// -L on a pull sends what a symlink points to, as long as that stays inside the module;
// a link leading out of the module is reported, never followed.
TEST_F(RsyncDaemonCompat, CopyLinksStaysInsideModule) {
    fs::create_directories(dir_ / "from/links/d");
    write_file(dir_ / "from/links/d/inner", "inner\n");
    write_file(dir_ / "secret", "outside the module\n");
    fs::create_symlink("../foo/one", dir_ / "from/links/up");
    fs::create_symlink("d", dir_ / "from/links/dirlink");
    fs::create_symlink(dir_ / "secret", dir_ / "from/links/escape");
    auto r = rsync("-rL localhost::test-from/links/ " + (dir_ / "pulled/"));
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_NE(r.output.find("symlink has no referent"), std::string::npos) << r.output;
    EXPECT_EQ(read_file(dir_ / "pulled/up"), "one\n");
    EXPECT_FALSE(fs::is_symlink(dir_ / "pulled/up"));
    EXPECT_EQ(read_file(dir_ / "pulled/dirlink/inner"), "inner\n");
    EXPECT_FALSE(fs::exists(dir_ / "pulled/escape"));

    // -k: only links to directories are followed; a link out of the module is not sent
    // at all (the client's copy of it would reach outside there).
    r = rsync("-rlk localhost::test-from/links/ " + (dir_ / "pulled-k/"));
    EXPECT_EQ(r.status, 23) << r.output;
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir_ / "pulled-k/escape")));
    EXPECT_TRUE(fs::is_symlink(dir_ / "pulled-k/up"));
    EXPECT_TRUE(fs::is_directory(fs::symlink_status(dir_ / "pulled-k/dirlink")));
}

// `refuse options = * !a !v` (an allow list): -av works, -avz is refused with a message.
TEST_F(RsyncDaemonCompat, RefuseOptionsAllowList) {
    write_file(conf_, read_file(conf_) + "\n[only-av]\n\tpath = " + (dir_ / "from") +
                          "\n\trefuse options = * !a !v\n");
    auto r = rsync("-av localhost::only-av/ " + (dir_ / "pulled/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "pulled/foo/one"), "one\n");
    r = rsync("-avz localhost::only-av/ " + (dir_ / "pulled2/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("refuse --compress"), std::string::npos) << r.output;
}

// A module below a directory its uid cannot search still works (the daemon enters the
// module before dropping privileges, as rsyncd).
TEST_F(RsyncDaemonCompat, ModuleUnderPrivateParent) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to switch to uid nobody";
    fs::create_directories(dir_ / "priv/mod");
    write_file(dir_ / "priv/mod/file", "private parent\n");
    ::chmod((dir_ / "priv").c_str(), 0700);
    write_file(conf_, read_file(conf_) + "\n[private]\n\tpath = " + (dir_ / "priv/mod") +
                          "\n\tuid = nobody\n\tgid = nogroup\n");
    auto r = rsync("-r localhost::private/ " + (dir_ / "pulled/"));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "pulled/file"), "private parent\n");
}

// `incoming chmod` / `outgoing chmod` (daemon-filter / chmod-option tests): the module
// rewrites the modes of what it receives and of what it sends.
TEST_F(RsyncDaemonCompat, IncomingAndOutgoingChmod) {
    write_file(conf_, read_file(conf_) + "\n[inc]\n\tpath = " + (dir_ / "to") +
                          "\n\tread only = no\n\tincoming chmod = F600,D750\n"
                          "[out]\n\tpath = " + (dir_ / "from") + "\n\toutgoing chmod = Fg-r,Fo-r\n"
                          "[bad]\n\tpath = " + (dir_ / "from") + "\n\toutgoing chmod = g=ur\n");
    auto r = rsync("-a " + (dir_ / "from/") + " localhost::inc/");
    ASSERT_EQ(r.status, 0) << r.output;
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / "to/bar/baz/three").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    ASSERT_EQ(::stat((dir_ / "to/bar").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0750u);

    r = rsync("-a localhost::out/ " + (dir_ / "pulled/"));
    ASSERT_EQ(r.status, 0) << r.output;
    ASSERT_EQ(::stat((dir_ / "pulled/foo/one").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    ASSERT_EQ(::stat((dir_ / "from/foo/one").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u) << "outgoing chmod changed the module's file";

    r = rsync("-a localhost::bad/ " + (dir_ / "pulled-bad/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("Invalid \"outgoing chmod\""), std::string::npos) << r.output;
}

// A module path (or secrets file) through a symlink some other user planted is refused
// instead of followed (rsync 3.5 change_dir()).
TEST_F(RsyncDaemonCompat, PlantedSymlinkInModulePathIsRefused) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to plant a symlink owned by nobody";
    fs::create_directories(dir_ / "escape_target");
    write_file(dir_ / "escape_target/canary", "must not be served\n");
    fs::create_symlink(dir_ / "escape_target", dir_ / "plant");
    ASSERT_EQ(::lchown((dir_ / "plant").c_str(), 65534, 65534), 0);
    write_file(conf_, read_file(conf_) + "\n[planted]\n\tpath = " + (dir_ / "plant") + "\n");
    auto r = rsync("localhost::planted/");
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_EQ(r.output.find("canary"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("@ERROR: chdir failed"), std::string::npos) << r.output;
}

// An oversized size argument (rsync -M--max-size=999...) is refused with a message that
// names it, not by dropping the connection.
TEST_F(RsyncDaemonCompat, OversizedSizeArgumentIsReported) {
    std::string big(5000, '9');
    auto r = rsync("-a -M--max-size=" + big + " localhost::test-from/ " + (dir_ / "pulled/"));
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("--max-size=" + std::string(200, '9')), std::string::npos) << r.output.substr(0, 600);
}

// A destination that is a symlink to a directory inside the module is followed, and so
// is (with -K) a symlink standing where the list has a directory: the module's filters
// are name-based (rsync's symlink-exclude tests); resolution stays beneath the root.
TEST_F(RsyncDaemonCompat, PushThroughInModuleDirSymlinks) {
    fs::create_directories(dir_ / "to/real");
    fs::create_symlink("real", dir_ / "to/link");
    fs::create_directories(dir_ / "src/link");
    write_file(dir_ / "src/link/new", "through the link\n");
    auto r = rsync("-a " + (dir_ / "src/link/") + " localhost::test-to/link/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_file(dir_ / "to/real/new"), "through the link\n");
    EXPECT_TRUE(fs::is_symlink(dir_ / "to/link"));

    write_file(dir_ / "src/link/newer", "kept dirlink\n");
    r = rsync("-aK " + (dir_ / "src/") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(fs::is_symlink(dir_ / "to/link"));
    EXPECT_EQ(read_file(dir_ / "to/real/newer"), "kept dirlink\n");

    // Without -K the symlink is replaced by a real directory, as rsync does.
    r = rsync("-a " + (dir_ / "src/") + " localhost::test-to/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_FALSE(fs::is_symlink(dir_ / "to/link"));

    // A destination link leading out of the module is not followed.
    fs::create_directories(dir_ / "outside");
    fs::create_symlink(dir_ / "outside", dir_ / "to/out");
    r = rsync("-a " + (dir_ / "src/link/") + " localhost::test-to/out/");
    EXPECT_TRUE(fs::is_empty(dir_ / "outside")) << r.output;
}

// `exclude from` / `include from` files outside the module; `gid = *`.
TEST_F(RsyncDaemonCompat, ExcludeFromFileAndAllGroups) {
    write_file(dir_ / "rules.excl", "# comment\n\ndrop*\n- /bar/baz/\n");
    write_file(dir_ / "rules.incl", "drop.keep\n");
    write_file(dir_ / "from/dropme", "x\n");
    write_file(dir_ / "from/drop.keep", "x\n");
    write_file(conf_, read_file(conf_) + "\n[filtered]\n\tpath = " + (dir_ / "from") +
                          "\n\texclude from = " + (dir_ / "rules.excl") + "\n\tinclude from = " +
                          (dir_ / "rules.incl") + "\n\tuid = root\n\tgid = *\n" +
                          "[broken]\n\tpath = " + (dir_ / "from") + "\n\texclude from = " + (dir_ / "missing") + "\n");
    auto r = rsync("-r localhost::filtered/");
    ASSERT_EQ(r.status, 0) << r.output;
    auto paths = listed_paths(r.output);
    EXPECT_EQ(paths.count("dropme"), 0u) << r.output;
    EXPECT_EQ(paths.count("drop.keep"), 1u) << r.output;
    EXPECT_EQ(paths.count("bar/baz/three"), 0u) << r.output;
    EXPECT_EQ(paths.count("bar/two"), 1u) << r.output;
    r = rsync("-r localhost::broken/");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("@ERROR: module broken cannot read its filter file"), std::string::npos) << r.output;
}

// `auth users` starting with a comma splits on commas only (rsync conf_strtok()), so
// "@nosuchgroup alice:deny" is one rule that matches nobody.
TEST_F(RsyncDaemonCompat, AuthUsersLeadingCommaForm) {
    write_file(dir_ / "secrets", "alice:sesame\n", 0600);
    write_file(conf_, read_file(conf_) + "\n[spaced]\n\tpath = " + (dir_ / "from") +
                          "\n\tauth users = , @nosuchgroup alice:deny , alice\n\tsecrets file = " +
                          (dir_ / "secrets") + "\n");
    auto r = run("env RSYNC_PASSWORD=sesame RSYNC_CONNECT_PROG='" + std::string(SYNCFSD_BIN) + " --config=" + conf_ +
            " --daemon' rsync -r rsync://alice@localhost/spaced/foo/");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(listed_paths(r.output).count("one"), 1u) << r.output;
}

}  // namespace
}  // namespace sfs::test
