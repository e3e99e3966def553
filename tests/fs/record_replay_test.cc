// The ordering contract of fs/change_record.h: namespace records come out in the order
// the ops took effect on SOURCE, so replaying them in order on an empty tree reproduces
// SOURCE's namespace, even when several threads race on the same names.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <algorithm>
#include <map>
#include <set>
#include <random>
#include <thread>

#include "tests/fs/mount_fixture.h"

namespace sfs::fs::test {
namespace {

std::map<std::string, char> tree(const std::string& root) {
    std::map<std::string, char> out;
    for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator(); ++it) {
        struct stat st;
        ::lstat(it->path().c_str(), &st);
        out[std::filesystem::relative(it->path(), root).string()] = S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'f';
    }
    return out;
}

// Names of each multiply linked node, grouped: {"a/x", "b/y"} for a file linked as both.
std::set<std::vector<std::string>> link_groups(const std::string& root) {
    std::map<ino_t, std::vector<std::string>> by_ino;
    for (auto it = std::filesystem::recursive_directory_iterator(root); it != std::filesystem::recursive_directory_iterator(); ++it) {
        struct stat st;
        if (::lstat(it->path().c_str(), &st) == 0 && !S_ISDIR(st.st_mode) && st.st_nlink > 1) {
            by_ino[st.st_ino].push_back(std::filesystem::relative(it->path(), root).string());
        }
    }
    std::set<std::vector<std::string>> out;
    for (auto& [ino, names] : by_ino) {
        std::sort(names.begin(), names.end());
        out.insert(names);
    }
    return out;
}

void replay(const std::vector<ChangeRecord>& records, const std::string& root) {
    auto p = [&](const std::string& rel) { return root + "/" + rel; };
    for (const auto& r : records) {
        int rc = 0;
        switch (r.kind) {
            case ChangeKind::Mkdir: rc = ::mkdir(p(r.path).c_str(), r.mode & 07777); break;
            case ChangeKind::Create: rc = ::close(::open(p(r.path).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644)); break;
            case ChangeKind::Symlink: rc = ::symlink(r.target.c_str(), p(r.path).c_str()); break;
            case ChangeKind::Link: rc = ::link(p(r.path2).c_str(), p(r.path).c_str()); break;
            case ChangeKind::Rename:
                rc = ::renameat2(AT_FDCWD, p(r.path).c_str(), AT_FDCWD, p(r.path2).c_str(), r.flags);
                break;
            case ChangeKind::Unlink: rc = ::unlink(p(r.path).c_str()); break;
            case ChangeKind::Rmdir: rc = ::rmdir(p(r.path).c_str()); break;
            default: break;
        }
        ASSERT_EQ(rc, 0) << to_string(r.kind) << " " << r.path << " " << r.path2 << ": " << std::strerror(errno);
    }
}

TEST(RecordReplay, ConcurrentNamespaceOpsReplayToTheSameTree) {
    InProcessMount m;
    m.start();
    for (int d = 0; d < 3; ++d) ASSERT_EQ(::mkdir(m.at("d" + std::to_string(d)).c_str(), 0755), 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
            auto name = [&] { return "d" + std::to_string(rng() % 3) + "/n" + std::to_string(rng() % 12); };
            for (int i = 0; i < 300; ++i) {
                const std::string a = m.at(name()), b = m.at(name());
                switch (rng() % 9) {
                    case 0:
                    case 1: {
                        int fd = ::open(a.c_str(), O_WRONLY | O_CREAT, 0644);
                        if (fd >= 0) {
                            (void)!::write(fd, "x", 1);
                            ::close(fd);
                        }
                        break;
                    }
                    case 2: ::rename(a.c_str(), b.c_str()); break;
                    case 3: ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE); break;
                    case 4: ::unlink(a.c_str()); break;
                    case 5: ::link(a.c_str(), b.c_str()); break;
                    case 6: ::mkdir(a.c_str(), 0755); break;
                    case 7: ::rmdir(a.c_str()); ::symlink("t", a.c_str()); break;
                    case 8: {  // an O_TMPFILE linked in as `a` (its Create is the link's record)
                        int fd = ::open(m.at("d" + std::to_string(rng() % 3)).c_str(), O_TMPFILE | O_WRONLY, 0644);
                        if (fd >= 0) {
                            (void)!::write(fd, "t", 1);
                            const std::string proc = "/proc/self/fd/" + std::to_string(fd);
                            ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, a.c_str(), AT_SYMLINK_FOLLOW);
                            ::close(fd);
                        }
                        break;
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    auto records = m.sink().take();
    TempDir replay_dir;
    replay(records, replay_dir.path());
    EXPECT_EQ(tree(m.source()), tree(replay_dir.path()));
    EXPECT_GT(records.size(), 100u);
}

// Every record names its node where that node is at the record's place in the stream:
// replaying the records in order, the path of each Setattr/Write/Setxattr/Link/Rename/
// Unlink is the node the record is about (checked by following inode numbers through the
// replay), and hard links come out as hard links. timeout=0 makes the kernel revalidate
// every cached name with a LOOKUP that runs without the directory's lock, concurrently
// with renames and unlinks of that name: a lookup that remembered the name a rename had
// just moved gave the next truncate of the node the name of whatever was created there
// (on a mirror: "truncate z5: Too many levels of symbolic links").
TEST(RecordReplay, EveryRecordNamesItsNodeAndHardlinksStayLinked) {
    InProcessMount m({"timeout=0"});
    m.start();
    for (int d = 0; d < 2; ++d) ASSERT_EQ(::mkdir(m.at("d" + std::to_string(d)).c_str(), 0755), 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 rng(static_cast<unsigned>(t) * 104729u + 3u);
            auto name = [&] { return "d" + std::to_string(rng() % 2) + "/n" + std::to_string(rng() % 6); };
            for (int i = 0; i < 1500; ++i) {
                const std::string a = m.at(name()), b = m.at(name());
                switch (rng() % 10) {
                    case 0: {
                        int fd = ::open(a.c_str(), O_WRONLY | O_CREAT, 0644);
                        if (fd >= 0) {
                            (void)!::pwrite(fd, "xy", 2, static_cast<off_t>(rng() % 64));
                            ::close(fd);
                        }
                        break;
                    }
                    case 1: ::rename(a.c_str(), b.c_str()); break;
                    case 2: ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE); break;
                    case 3: ::unlink(a.c_str()); break;
                    case 4: ::link(a.c_str(), b.c_str()); break;
                    case 5: ::symlink("t", a.c_str()); break;
                    case 6: (void)!::truncate(a.c_str(), static_cast<off_t>(rng() % 32)); break;
                    case 7: ::chmod(a.c_str(), 0600 | (rng() % 2 ? 044 : 0)); break;
                    case 8: {  // an O_TMPFILE, written before and after it is linked in as `a`
                        int fd = ::open(m.at("d" + std::to_string(rng() % 2)).c_str(), O_TMPFILE | O_RDWR, 0644);
                        if (fd >= 0) {
                            (void)!::pwrite(fd, "tmp", 3, static_cast<off_t>(rng() % 64));
                            const std::string proc = "/proc/self/fd/" + std::to_string(fd);
                            if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, a.c_str(), AT_SYMLINK_FOLLOW) == 0) {
                                (void)!::pwrite(fd, "z", 1, 0);
                            }
                            ::close(fd);
                        }
                        break;
                    }
                    default: {
                        struct stat st;
                        ::lstat(a.c_str(), &st);  // revalidating lookups
                        break;
                    }
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    auto records = m.sink().take();
    TempDir replay_dir;
    const std::string root = replay_dir.path();
    auto p = [&](const std::string& rel) { return root + "/" + rel; };
    std::map<std::uint64_t, ino_t> replica;  // SOURCE ino -> replay ino of the same node
    auto expect_node = [&](const ChangeRecord& r, const std::string& rel, std::size_t i) {
        auto it = replica.find(r.ino);
        if (it == replica.end()) return;  // root or a node from before the records
        struct stat st;
        ASSERT_EQ(::lstat(p(rel).c_str(), &st), 0) << "record " << i << " " << to_string(r.kind) << " " << rel;
        ASSERT_EQ(st.st_ino, it->second) << "record " << i << " " << to_string(r.kind) << " " << rel
                                         << " names another node on the replay";
    };
    for (std::size_t i = 0; i < records.size(); ++i) {
        const ChangeRecord& r = records[i];
        int rc = 0;
        switch (r.kind) {
            case ChangeKind::Mkdir: rc = ::mkdir(p(r.path).c_str(), 0755); break;
            case ChangeKind::Create: rc = ::close(::open(p(r.path).c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644)); break;
            case ChangeKind::Symlink: rc = ::symlink(r.target.c_str(), p(r.path).c_str()); break;
            case ChangeKind::Link:
                expect_node(r, r.path2, i);
                rc = ::link(p(r.path2).c_str(), p(r.path).c_str());
                break;
            case ChangeKind::Rename:
                expect_node(r, r.path, i);
                rc = ::renameat2(AT_FDCWD, p(r.path).c_str(), AT_FDCWD, p(r.path2).c_str(), r.flags);
                break;
            case ChangeKind::Unlink:
                expect_node(r, r.path, i);
                rc = ::unlink(p(r.path).c_str());
                break;
            case ChangeKind::Rmdir: rc = ::rmdir(p(r.path).c_str()); break;
            case ChangeKind::Setattr:
            case ChangeKind::Write:
            case ChangeKind::Setxattr:
            case ChangeKind::Removexattr: expect_node(r, r.path, i); break;
            default: break;
        }
        ASSERT_EQ(rc, 0) << "record " << i << " " << to_string(r.kind) << " " << r.path << " " << r.path2 << ": "
                         << std::strerror(errno);
        if (r.kind == ChangeKind::Mkdir || r.kind == ChangeKind::Create || r.kind == ChangeKind::Symlink) {
            struct stat st;
            ASSERT_EQ(::lstat(p(r.path).c_str(), &st), 0);
            replica[r.ino] = st.st_ino;
        }
    }
    EXPECT_EQ(tree(m.source()), tree(root));
    EXPECT_EQ(link_groups(m.source()), link_groups(root));
    EXPECT_GT(records.size(), 500u);
}

}  // namespace
}  // namespace sfs::fs::test
