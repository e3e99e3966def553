// Concurrent random load through a mirrored mount: 4 threads of writes at offsets, appends,
// truncates, renames (of files and directories), RENAME_EXCHANGE, hard links, symlinks,
// mkdir/rmdir, chmod, utimes, fallocate, mmap writes and xattrs on a small set of names, so
// that the ops collide all the time. The journal alone must carry the mirror: every op
// replays on syncfsd without an error, no reconcile pass runs after the initial one, and
// after `syncfsctl wait` rsync -aHAXc finds no difference (content, modes, times, symlinks,
// hard links, xattrs).
//
// Each seed runs for kSeconds (SYNCFS_STRESS_SECS overrides it, for longer runs by hand).
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <thread>

#include "tests/replicator/e2e_harness.h"

namespace sfs::e2e {
namespace {

constexpr double kSeconds = 7.0;
constexpr int kThreads = 4;

std::size_t count_of(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + needle.size())) ++n;
    return n;
}

// The value of "key": N in syncfsctl's JSON (first occurrence), or -1.
long long json_number(const std::string& json, const std::string& key) {
    auto k = json.find("\"" + key + "\": ");
    if (k == std::string::npos) return -1;
    return std::atoll(json.c_str() + k + key.size() + 4);
}

// Another worker may truncate a file while this one writes through a mapping of it: the
// access past the new end raises SIGBUS, which ends that one write (not the test, which
// would then leave its mount and daemons behind).
// volatile: the compiler knows memcpy reads no globals, so it would otherwise drop the store
// before the memcpy as dead (the next store clears it) and the handler would find nothing.
thread_local sigjmp_buf* volatile t_bus_jump = nullptr;

void on_sigbus(int sig) {
    if (t_bus_jump) siglongjmp(*t_bus_jump, 1);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

// One worker: random ops on names below `root` until `deadline`.
void worker(const std::string& root, std::uint64_t seed, std::chrono::steady_clock::time_point deadline,
            std::atomic<std::uint64_t>& done) {
    std::mt19937_64 rng(seed);
    auto pick = [&](auto const& list) { return list[rng() % list.size()]; };
    static const std::array<const char*, 6> dirs = {"", "a", "b", "a/c", "b/d", "e/f/g"};
    static const std::array<const char*, 5> stems = {"x", "y", "z", "w", "v"};
    auto path = [&] {
        std::string d = pick(dirs);
        return root + "/" + (d.empty() ? "" : d + "/") + pick(stems) + std::to_string(rng() % 8);
    };
    auto bytes = [&](std::size_t n) {
        std::string s(n, '\0');
        for (auto& c : s) c = static_cast<char>(rng());
        return s;
    };
    auto rnd = [&](std::uint64_t n) { return static_cast<std::int64_t>(rng() % n); };
    while (std::chrono::steady_clock::now() < deadline) {
        const std::string p = path();
        std::error_code ec;
        stdfs::create_directories(stdfs::path(p).parent_path(), ec);
        switch (rng() % 18) {
            case 0:
            case 1: {  // write at an offset
                int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0) break;
                const std::string data = bytes(static_cast<std::size_t>(1 + rnd(20000)));
                (void)!::pwrite(fd, data.data(), data.size(), rnd(100000));
                ::close(fd);
                break;
            }
            case 2: {  // append
                int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (fd < 0) break;
                const std::string data = bytes(static_cast<std::size_t>(1 + rnd(5000)));
                (void)!::write(fd, data.data(), data.size());
                ::close(fd);
                break;
            }
            case 3: (void)!::truncate(p.c_str(), rnd(50000)); break;
            case 4: (void)!::rename(p.c_str(), path().c_str()); break;
            case 5: (void)!::link(p.c_str(), path().c_str()); break;
            case 6: (void)!::unlink(p.c_str()); break;
            case 7: (void)!::mkdir(p.c_str(), 0755); break;
            case 8: (void)!::rmdir(p.c_str()); break;
            case 9: {
                static const std::array<mode_t, 4> modes = {0600, 0644, 0755, 0400};
                (void)!::chmod(p.c_str(), pick(modes));
                break;
            }
            case 10: {
                const std::string value = bytes(static_cast<std::size_t>(1 + rnd(50)));
                (void)!::setxattr(p.c_str(), ("user.k" + std::to_string(rnd(3))).c_str(), value.data(), value.size(), 0);
                break;
            }
            case 11: (void)!::symlink(("target" + std::to_string(rnd(5))).c_str(), p.c_str()); break;
            case 12: {  // a write through a shared mapping
                int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
                if (fd < 0) break;
                struct stat st;
                if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
                    const auto size = static_cast<std::size_t>(st.st_size);
                    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                    if (m != MAP_FAILED) {
                        const std::size_t off = rng() % size;
                        const std::size_t n = std::min<std::size_t>(size - off, 1 + rng() % 4096);
                        const std::string data = bytes(n);
                        sigjmp_buf jump;
                        if (sigsetjmp(jump, 1) == 0) {
                            t_bus_jump = &jump;
                            std::atomic_signal_fence(std::memory_order_seq_cst);
                            std::memcpy(static_cast<char*>(m) + off, data.data(), n);
                            std::atomic_signal_fence(std::memory_order_seq_cst);
                        }
                        t_bus_jump = nullptr;
                        ::msync(m, size, MS_SYNC);
                        ::munmap(m, size);
                    }
                }
                ::close(fd);
                break;
            }
            case 13: {  // a directory renamed (into another, over an empty one, or failing)
                static const std::array<const char*, 6> from = {"a", "b", "e", "a/c", "b/d", "e/f"};
                static const std::array<const char*, 6> to = {"a", "b", "e", "h", "a/c", "b/d"};
                (void)!::rename((root + "/" + pick(from)).c_str(), (root + "/" + pick(to)).c_str());
                break;
            }
            case 14: {
                struct timespec ts[2] = {{rnd(1000000000), 0}, {rnd(1000000000), 0}};
                (void)!::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW);
                break;
            }
            case 15: {
                int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
                if (fd < 0) break;
                (void)!::posix_fallocate(fd, rnd(50000), 1 + rnd(50000));
                ::close(fd);
                break;
            }
            default:
                (void)!::renameat2(AT_FDCWD, p.c_str(), AT_FDCWD, path().c_str(), RENAME_EXCHANGE);
                break;
        }
        done.fetch_add(1, std::memory_order_relaxed);
    }
}

class E2eStress : public ::testing::TestWithParam<std::uint64_t> {};

TEST_P(E2eStress, ConcurrentRandomOpsReplayWithoutErrorsAndTheMirrorEndsEqual) {
    double secs = kSeconds;
    if (const char* s = std::getenv("SYNCFS_STRESS_SECS")) secs = std::atof(s);
    Env env;
    Syncfsd daemon(env);
    Mount mount(env);
    ASSERT_EQ(mount.wait(60).status, 0) << mount.log();  // the mount's initial reconcile is done
    const std::size_t passes_before = count_of(mount.log(), "reconcile: done");

    struct sigaction bus{};
    bus.sa_handler = on_sigbus;
    sigemptyset(&bus.sa_mask);
    ASSERT_EQ(::sigaction(SIGBUS, &bus, nullptr), 0);
    std::atomic<std::uint64_t> ops{0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<long>(secs * 1000));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back(worker, env.mnt, GetParam() * 100 + static_cast<std::uint64_t>(t), deadline, std::ref(ops));
    }
    for (auto& th : threads) th.join();
    EXPECT_GT(ops.load(), 1000u);

    auto w = mount.wait(120);
    const std::string status = mount.status_json();
    const std::string slog = mount.log();
    const std::string dlog = daemon.log();
    EXPECT_EQ(w.status, 0) << w.output;
    // Every op the journal sent applied cleanly: nothing failed on syncfsd, so no repair pass.
    EXPECT_EQ(json_number(status, "errors"), 0) << status;
    EXPECT_EQ(count_of(slog, "failed:"), 0u) << slog;
    EXPECT_EQ(count_of(dlog, "module web seq "), 0u) << dlog;
    EXPECT_EQ(count_of(slog, "reconcile: done"), passes_before) << "a reconcile pass ran during the load:\n" << slog;
    EXPECT_EQ(json_number(status, "outside_verified"), 0) << status;
    const std::string diff = env.diff();
    if (!diff.empty()) {
        // What the two sides have for each differing path, and what syncfs complained about
        // (an ENOSPC of the machine's disk, for one, also changes SOURCE's times).
        std::string sides;
        std::istringstream lines(diff);
        for (std::string line; std::getline(lines, line);) {
            const std::string path = line.substr(line.find(' ') + 1);
            sides += sh("stat -c '%n %i %h %s %y' '" + env.src + "/" + path + "' '" + env.mirror + "/" + path + "'").output;
        }
        std::string complaints;
        std::istringstream log(slog);
        for (std::string line; std::getline(log, line);) {
            if (line.find("] [warning] ") != std::string::npos || line.find("] [error] ") != std::string::npos) {
                complaints += line + "\n";
            }
        }
        ADD_FAILURE() << "after " << ops.load() << " ops:\n" << diff << sides << complaints;
    }
}

INSTANTIATE_TEST_SUITE_P(FixedSeeds, E2eStress, ::testing::Values(1u, 2u, 3u));

}  // namespace
}  // namespace sfs::e2e
