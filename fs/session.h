// One syncfs mount: SOURCE opened, FUSE session created and mounted, the multithreaded
// loop, and the unmount. Used by the `syncfs` entry point and, in-process, by tests.
//
//   auto s = Session::create(options, &sink);   // opens SOURCE before mounting
//   s->mount();                                  // MOUNTPOINT may equal SOURCE
//   s->loop();                                   // returns once unmounted / signalled
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common/result.h"
#include "fs/change_record.h"
#include "fs/mount_options.h"

struct fuse_session;

namespace sfs::fs {

struct FsContext;
class NullSink;

class Session {
public:
    // Opens SOURCE (must be a directory) and creates the FUSE session. `sink` may be null
    // (changes are dropped) and must outlive the Session.
    static Result<std::unique_ptr<Session>> create(const MountOptions& options, ChangeSink* sink);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    Result<void> mount();
    // SIGINT/SIGTERM/SIGHUP end the loop (CLI only; tests unmount instead).
    Result<void> install_signal_handlers();
    // Runs the FUSE worker threads until the filesystem is unmounted or exit is requested.
    Result<void> loop();
    // Unmounts (idempotent).
    void unmount();

    // The kernel may cache SOURCE's `path` (relative, "" = root) stale because it changed
    // outside the mount: drops the node's attributes and pages and the (parent, name) entry.
    // Call from any thread except a FUSE handler (the notify calls could deadlock there).
    void invalidate(const std::string& path) noexcept;
    // Events for SOURCE's subtree `path` ("" = everything) were lost: drops the kernel's
    // attributes and pages of every node it knows at or below it, every known (parent,
    // name) entry, and the entry of every name the known directories hold in SOURCE now
    // (a negative entry cached for a name made meanwhile). Bounded by the inode table and
    // the sizes of the directories the kernel knows; one directory fd at a time.
    void invalidate_subtree(const std::string& path) noexcept;

    FsContext& context() noexcept { return *ctx_; }

private:
    Session() = default;
    std::unique_ptr<NullSink> null_sink_;
    std::unique_ptr<FsContext> ctx_;
    fuse_session* se_ = nullptr;
    bool mounted_ = false;
    bool signals_ = false;
    std::string mountpoint_;
    std::mutex notify_mu_;       // invalidate() vs unmount()
    bool can_notify_ = false;    // guarded by notify_mu_
};

}  // namespace sfs::fs
