// Replicator: the facade the syncfs entry point uses (fs/main.cc).
//
//   auto r = sfs::repl::Replicator::create(options, source_dirfd);  // before the mount
//   (*r)->start();                          // threads: journal flusher, mirrors, control socket
//   fuse session with (*r)->sink() as the fs::ChangeSink
//   (*r)->stop(/*clean=*/true);             // after the FUSE session ended
//
// It owns the state directory (docs/journal.md): the journal, per-mirror cursors, the clean
// marker, the stream epoch and the control socket (docs/replication.md).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"
#include "fs/change_record.h"
#include "protocol/control/control.h"
#include "replicator/mirror_connection.h"

namespace sfs::repl {

struct ReplicatorOptions {
    std::vector<std::string> mirrors;   // rsync://[user@]host[:port]/module, one per mirror
    std::string secrets_file;           // secrets=FILE
    std::string state_dir;              // state=DIR; empty: /var/lib/syncfs/<hash of source>
    std::string source;                 // SOURCE as given (made absolute here)
    std::string mountpoint;             // MOUNTPOINT, for the /run/syncfs/<hash>.sock link
    bool sync = false;                  // -o sync: fsync waits for every mirror's durable ack
    std::chrono::milliseconds delay{0}; // delay=MS coalescing window
    std::vector<std::string> excludes;  // exclude=PATTERN (repeatable)
    std::chrono::milliseconds sync_timeout{60000};  // -o sync: fsync fails with EIO after this
    std::chrono::milliseconds stop_grace{10000};    // clean stop: wait this long for mirrors
    std::string run_dir = protocol::control::kRunDir;  // where the mountpoint socket link goes
    MirrorConnector connector;          // empty: the native MirrorLink
    std::string watch = "auto";         // watch=off|auto|fanotify|inotify (docs/watcher.md)
    // journal_max=SIZE: past it the oldest segments go even if a mirror still needs them;
    // that mirror is then reconciled in full (docs/replication.md). 0: no cap.
    std::uint64_t journal_max = 1ull << 30;
};

// Parses "a;b" lists and repeated options into one list, dropping empty items.
std::vector<std::string> split_mirrors(const std::vector<std::string>& values);

class Replicator {
public:
    static Result<std::unique_ptr<Replicator>> create(ReplicatorOptions options, int source_dirfd);
    ~Replicator();

    // Starts every thread. Call it in the process that serves the mount (after any fork).
    Result<void> start();
    fs::ChangeSink& sink();
    // Outside-mount watcher: how the mount's kernel cache of a path changed outside it is
    // dropped (fs::Session::invalidate). Install before start().
    void set_invalidator(std::function<void(const std::string& path, bool subtree)> fn);
    // Stops every thread. clean: the FUSE session ended normally; wait up to stop_grace for
    // the mirrors, save cursors and write the clean marker.
    void stop(bool clean);

    // Control operations (also used by tests).
    protocol::control::Fields status() const;
    // Returns "" when everything journaled before the call is on every mirror, else why not.
    std::string wait(std::chrono::milliseconds timeout);
    void resync();
    const std::string& state_dir() const;

    // `path` of SOURCE changed behind the mount's back (what the outside-mount watcher
    // reports, docs/watcher.md): journals a Verify record, so every mirror makes its copy
    // equal SOURCE's (a librsync delta for content; the whole subtree when `subtree`).
    void note_outside_change(const std::string& path, bool subtree = false);

    struct Impl;

private:
    explicit Replicator(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace sfs::repl
