// `syncfs SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]`: parse, log, mount, serve. Kept thin;
// this is the only place that may wire in the replicator (as the ChangeSink).
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <spdlog/spdlog.h>

#include "common/log.h"
#include "common/unique_fd.h"
#include "fs/mount_options.h"
#include "fs/session.h"
#include "replicator/mirror_link.h"
#include "replicator/replicator.h"

namespace {

// With mirror=: the replicator, created before the mount (a bad state dir or option fails
// the mount) from its own fd of SOURCE (taken before mounting, so mounting over SOURCE in
// place works); its threads start after fuse_daemonize's fork.
sfs::Result<std::unique_ptr<sfs::repl::Replicator>> make_replicator(const sfs::fs::MountOptions& o,
                                                                    sfs::UniqueFd& source_fd) {
    source_fd = sfs::UniqueFd(::open(o.source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!source_fd) return sfs::fail(o.source + ": " + std::strerror(errno), errno);
    sfs::repl::ReplicatorOptions r;
    r.mirrors = sfs::repl::split_mirrors(o.mirrors);
    r.secrets_file = o.secrets;
    r.state_dir = o.state;
    r.source = o.source;
    r.mountpoint = o.mountpoint;
    r.sync = o.sync;
    r.delay = std::chrono::milliseconds(o.delay_ms);
    r.excludes = o.excludes;
    r.watch = o.watch;
    r.journal_max = o.journal_max;
    sfs::repl::MirrorLinkOptions link;
    link.peer_timeout = std::chrono::seconds(o.mirror_timeout_s);
    r.connector = sfs::repl::mirror_link_connector(link);
    return sfs::repl::Replicator::create(std::move(r), source_fd.get());
}

}  // namespace

int main(int argc, char** argv) {
    auto parsed = sfs::fs::parse_command_line(argc, argv);
    if (!parsed) {
        std::fprintf(stderr, "syncfs: %s\n", parsed.error().message.c_str());
        return 1;
    }
    const sfs::fs::MountOptions& options = *parsed;
    if (options.help) {
        std::fputs(sfs::fs::usage(argv[0]).c_str(), stdout);
        return 0;
    }
    if (options.version) {
        std::printf("syncfs 0.1.0 (libfuse %s)\n", fuse_pkgversion());
        return 0;
    }
    sfs::LogOptions log;
    log.program = "syncfs";
    log.file = options.log_file;
    log.use_syslog = !options.foreground && options.log_file.empty();
    log.debug = options.debug;
    if (auto r = sfs::init_logging(log); !r) {
        std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
        return 1;
    }
    // Modes arrive already masked by the caller's umask; ours must not mask them again.
    ::umask(0);
    sfs::UniqueFd source_fd;
    std::unique_ptr<sfs::repl::Replicator> replicator;
    if (!options.mirrors.empty()) {
        auto r = make_replicator(options, source_fd);
        if (!r) {
            std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
            return 1;
        }
        replicator = std::move(*r);
    } else if (!options.secrets.empty() || !options.state.empty() || options.sync || !options.excludes.empty()) {
        std::fprintf(stderr, "syncfs: secrets=, state=, sync and exclude= need mirror=URL\n");
        return 1;
    }
    auto session = sfs::fs::Session::create(options, replicator ? &replicator->sink() : nullptr);
    if (!session) {
        std::fprintf(stderr, "syncfs: %s\n", session.error().message.c_str());
        return 1;
    }
    if (auto r = (*session)->mount(); !r) {
        std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
        return 1;
    }
    if (auto r = (*session)->install_signal_handlers(); !r) {
        std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
        return 1;
    }
    if (fuse_daemonize(options.foreground ? 1 : 0) != 0) return 1;
    if (replicator) {
        // The watcher starts inside start(): after the fork (its pid filter is getpid()).
        replicator->set_invalidator([s = session->get()](const std::string& path, bool subtree) {
            if (subtree) {
                s->invalidate_subtree(path);
            } else {
                s->invalidate(path);
            }
        });
        if (auto s = replicator->start(); !s) {
            spdlog::error("replicator: {}", s.error().message);
            (*session)->unmount();
            return 1;
        }
    }
    auto r = (*session)->loop();
    (*session)->unmount();
    // A normal end of the loop (umount, SIGTERM) is a clean stop; the journal keeps whatever
    // the mirrors have not acknowledged yet.
    if (replicator) replicator->stop(/*clean=*/r.has_value());
    if (!r) {
        std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
        return 1;
    }
    return 0;
}
