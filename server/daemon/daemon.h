// The syncfsd process: listening sockets, one forked process per connection, signals.
//
// Design note. The listening process never runs protocol code: it accepts, forks, and the
// child serves the connection (serve_connection()), where chroot and uid/gid changes are
// confined to that one connection, exactly as rsyncd does. Signals arrive through a
// signalfd polled with the listeners, so no work happens in a signal handler:
//   SIGHUP   re-read the config; new connections use it, running ones keep theirs. A bad
//            file is logged and the old config stays.
//   SIGTERM/SIGINT  stop accepting, give running transfers `kShutdownGrace` to finish,
//            then SIGTERM them (transfers write to temp files, so an abort leaves no torn
//            file), remove the pid file, exit 0.
//   SIGCHLD  reap children.
#pragma once

#include <optional>
#include <string>

#include "server/daemon/config.h"

namespace sfs::server {

struct DaemonOptions {
    std::string config_path = "/etc/syncfsd.conf";
    std::optional<int> port;              // --port overrides `port`
    std::optional<std::string> address;   // --address overrides `address`
    bool no_detach = false;
    std::string log_file;                 // --log-file overrides `log file`
    bool inetd = false;
    // --server --daemon: stdin/stdout are a remote shell's pipes; the peer is taken from
    // REMOTE_HOST / SSH_CONNECTION / SSH_CLIENT as rsync's client_addr() does.
    bool over_remote_shell = false;
    int shutdown_grace_s = 10;
};

// Runs the listening daemon until SIGTERM. Returns the process exit code. Errors before
// the daemon is running (bad config, port in use) are printed to stderr and return 1.
int run_daemon(const DaemonOptions& options, DaemonConfig config);

// Serves the one connection on stdin/stdout (xinetd, systemd Accept=yes). Exit code.
int run_inetd(const DaemonOptions& options, const DaemonConfig& config);

}  // namespace sfs::server
