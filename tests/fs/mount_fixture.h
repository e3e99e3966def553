// Test support: a real FUSE mount of syncfs served in-process (so a recording ChangeSink
// can be inspected), temp directories that are removed even when a test fails, and
// helpers to run a subprocess with a time limit.
#pragma once

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fs/change_record.h"
#include "fs/context.h"
#include "fs/mount_options.h"
#include "fs/session.h"

namespace sfs::fs::test {

class RecordingSink final : public ChangeSink {
public:
    void on_change(const ChangeRecord& record) noexcept override {
        std::lock_guard lock(mu_);
        records_.push_back(record);
    }
    std::vector<ChangeRecord> take() {
        std::lock_guard lock(mu_);
        return std::exchange(records_, {});
    }

private:
    std::mutex mu_;
    std::vector<ChangeRecord> records_;
};

// A directory under /tmp, world-traversable (non-root children use it), removed at scope end.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/syncfs-test-XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        if (!p) throw std::runtime_error("mkdtemp failed");
        path_ = p;
        ::chmod(path_.c_str(), 0755);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string sub(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// SOURCE and MOUNTPOINT in a TempDir, mounted in-process with a RecordingSink.
class InProcessMount {
public:
    explicit InProcessMount(std::vector<std::string> extra_options = {}, bool in_place = false) {
        source_ = dir_.sub("src");
        mountpoint_ = in_place ? source_ : dir_.sub("mnt");
        std::filesystem::create_directories(source_);
        std::filesystem::create_directories(mountpoint_);
        ::chmod(source_.c_str(), 0755);
        ::chmod(mountpoint_.c_str(), 0755);
        options_ = extra_options;
    }
    ~InProcessMount() { stop(); }

    void prepare_source(const std::function<void(const std::string&)>& fill) { fill(source_); }

    void start() {
        std::vector<const char*> argv = {"syncfs", source_.c_str(), mountpoint_.c_str(), "-f"};
        std::string joined;
        for (const auto& o : options_) joined += (joined.empty() ? "" : ",") + o;
        if (!joined.empty()) {
            argv.push_back("-o");
            argv.push_back(joined.c_str());
        }
        auto opts = parse_command_line(static_cast<int>(argv.size()), argv.data());
        ASSERT_TRUE(opts) << opts.error().message;
        auto s = Session::create(*opts, &sink_);
        ASSERT_TRUE(s) << s.error().message;
        session_ = std::move(*s);
        auto m = session_->mount();
        ASSERT_TRUE(m) << m.error().message;
        loop_ = std::thread([this] { (void)session_->loop(); });
    }

    void stop() {
        if (!session_) return;
        ::umount2(mountpoint_.c_str(), MNT_DETACH);
        if (loop_.joinable()) loop_.join();
        session_.reset();
    }

    const std::string& source() const { return source_; }
    const std::string& mnt() const { return mountpoint_; }
    std::string src(const std::string& rel) const { return source_ + "/" + rel; }
    std::string at(const std::string& rel) const { return mountpoint_ + "/" + rel; }
    RecordingSink& sink() { return sink_; }
    FsContext& context() { return session_->context(); }
    const TempDir& dir() const { return dir_; }

private:
    TempDir dir_;
    std::string source_, mountpoint_;
    std::vector<std::string> options_;
    RecordingSink sink_;
    std::unique_ptr<Session> session_;
    std::thread loop_;
};

}  // namespace sfs::fs::test
