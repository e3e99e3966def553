// The ordering contract of fs/change_record.h: namespace records come out in the order
// the ops took effect on SOURCE, so replaying them in order on an empty tree reproduces
// SOURCE's namespace, even when several threads race on the same names.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
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
                switch (rng() % 8) {
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

}  // namespace
}  // namespace sfs::fs::test
