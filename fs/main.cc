// `syncfs SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]`: parse, log, mount, serve. Kept thin;
// this is the only place that may wire in the replicator (as the ChangeSink).
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cstdio>

#include "common/log.h"
#include "fs/mount_options.h"
#include "fs/session.h"

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
    auto session = sfs::fs::Session::create(options, nullptr);
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
    auto r = (*session)->loop();
    (*session)->unmount();
    if (!r) {
        std::fprintf(stderr, "syncfs: %s\n", r.error().message.c_str());
        return 1;
    }
    return 0;
}
