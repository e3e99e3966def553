// The native syncfs session: the mirror side of docs/protocol.md, after the text handshake.
//
// server/daemon/ does the text phase (greeting, the client's `SYNCFS <ver> <module>` line,
// hosts allow/deny, max connections, auth exactly as for rsync clients, chroot and uid/gid)
// and, after sending `@RSYNCD: OK\n`, calls run_native_session() with the connection's fds.
// Everything binary from then on (Hello, ops, acks, queries) happens here.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace sfs::server {

// What a native session may do inside one module. Filled from the module's rsyncd.conf section.
struct NativeModule {
    std::string name;            // module name, for messages
    std::string path;            // module root on disk; used when root_fd < 0
    int root_fd = -1;            // borrowed: a directory fd of the module root (opened before
                                 // chroot); preferred over path
    std::string state_dir;       // per-stream applied seqs; empty = /var/lib/syncfsd/<name>
    int state_dir_fd = -1;       // borrowed directory fd; preferred over state_dir (chroot)
    bool read_only = false;      // every mutation is refused with EROFS (queries still work)
    bool munge_symlinks = false; // symlink targets stored with the rsyncd "/rsyncd-munged/" prefix
    bool am_root = false;        // may chown / mknod devices
    std::string peer;            // "host (address)" for log lines
    int lock_timeout_ms = 10000; // wait this long for an older session of the same stream
    int idle_timeout_s = 600;    // no frame for this long: the session ends (0 = never)
    int io_timeout_s = 0;        // the module's `timeout`: a client that reads nothing of our
                                 // replies for this long is dropped (0 = use idle_timeout_s)
    bool own_process = false;    // the session owns its process (syncfsd's connection child):
                                 // SIGTERM ends it cleanly (see run_native_session)
};

struct NativeStats {
    std::uint64_t bytes_in = 0;     // from the client
    std::uint64_t bytes_out = 0;    // to the client
    std::uint64_t ops_applied = 0;  // mutations applied successfully
    std::uint64_t ops_failed = 0;   // mutations acked with an errno
    std::uint64_t ops_skipped = 0;  // replays of already applied seqs
};

// Runs one native session until the client closes (success) or a protocol/I/O error (an error
// naming the peer; a Fatal frame was sent where possible). Operation errors never end it.
// With own_process, SIGTERM (a newer session of the stream superseding this one, see
// StreamState; or syncfsd shutting down) shuts the connection down, so whatever the session
// is blocked in returns and it ends through its normal error path: the process exits rather
// than dying of the signal.
Result<NativeStats> run_native_session(int in_fd, int out_fd, const NativeModule& module);

}  // namespace sfs::server
