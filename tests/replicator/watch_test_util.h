// Shared fixtures for the watcher tests: temp dirs on the real filesystem, a sink that
// records every change and can hold the watcher thread (a slow consumer, to make the real
// kernel queue overflow), and small file helpers.
#pragma once

#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "tests/support/eventually.h"
#include "replicator/watch/outside_change.h"
#include "replicator/watch/watcher.h"

namespace sfs::repl::watch::test {

using namespace std::chrono_literals;
using Kind = OutsideChange::Kind;

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/syncfs-watch-XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        if (p == nullptr) std::abort();
        path_ = p;
    }
    ~TempDir() {
        ::nftw(path_.c_str(), [](const char* f, const struct stat*, int, FTW*) { return ::remove(f); }, 64,
               FTW_DEPTH | FTW_PHYS);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::string& data = "x") {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd.valid()) << path;
    ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size())) << path;
}

inline void append_file(const std::string& path, const std::string& data) {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd.valid()) << path;
    ASSERT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size())) << path;
}

using testsupport::eventually;

inline std::string describe(const OutsideChange& c) {
    std::string s = std::string(to_string(c.kind)) + "(" + c.path;
    if (!c.path2.empty()) s += " -> " + c.path2;
    return s + (c.is_dir ? ", dir)" : ")");
}

class RecordingSink : public OutsideChangeSink {
public:
    void on_outside_change(const OutsideChange& change) noexcept override {
        std::unique_lock lock(mutex_);
        changes_.push_back(change);
        changed_.notify_all();
        if (hold_) {
            held_ = true;
            changed_.notify_all();
            changed_.wait(lock, [&] { return !hold_; });
        }
    }

    // Blocks the watcher thread inside the next sink call until release().
    void hold_next() {
        std::lock_guard lock(mutex_);
        hold_ = true;
        held_ = false;
    }
    bool wait_held(std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return held_; });
    }
    void release() {
        std::lock_guard lock(mutex_);
        hold_ = false;
        changed_.notify_all();
    }

    // Waits until some recorded change satisfies `pred`.
    bool wait_for(const std::function<bool(const OutsideChange&)>& pred, std::chrono::milliseconds timeout = 20s) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout,
                                 [&] { return std::any_of(changes_.begin(), changes_.end(), pred); });
    }
    bool wait_for(Kind kind, const std::string& path, std::chrono::milliseconds timeout = 20s) {
        return wait_for([&](const OutsideChange& c) { return c.kind == kind && c.path == path; }, timeout);
    }
    bool wait_for_rename(const std::string& from, const std::string& to, std::chrono::milliseconds timeout = 20s) {
        return wait_for(
            [&](const OutsideChange& c) { return c.kind == Kind::Renamed && c.path == from && c.path2 == to; },
            timeout);
    }
    // Any change touching `path` (either side of a rename).
    bool seen(const std::string& path) const {
        std::lock_guard lock(mutex_);
        return std::any_of(changes_.begin(), changes_.end(),
                           [&](const OutsideChange& c) { return c.path == path || c.path2 == path; });
    }
    std::vector<OutsideChange> changes() const {
        std::lock_guard lock(mutex_);
        return changes_;
    }
    std::string dump() const {
        std::string s;
        for (const auto& c : changes()) s += describe(c) + "\n";
        return s;
    }
    void clear() {
        std::lock_guard lock(mutex_);
        changes_.clear();
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<OutsideChange> changes_;
    bool hold_ = false;
    bool held_ = false;
};

// A private tmpfs on a temp dir: fast to fill with 50k files and, for fanotify, a
// filesystem of its own (a filesystem-wide mark then sees only this test's changes).
// Falls back to the plain temp dir when mounting is not possible.
class TmpfsDir {
public:
    TmpfsDir() { mounted_ = ::mount("syncfs-watch-test", dir_.path().c_str(), "tmpfs", 0, "size=256m") == 0; }
    ~TmpfsDir() {
        if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
    }
    const std::string& path() const { return dir_.path(); }
    std::string operator/(const std::string& rel) const { return dir_ / rel; }

private:
    TempDir dir_;
    bool mounted_ = false;
};

// The path as an open directory fd, the way syncfs hands SOURCE to the watcher.
inline UniqueFd open_dir(const std::string& path) {
    return UniqueFd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
}

}  // namespace sfs::repl::watch::test
