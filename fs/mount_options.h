// The command line of `syncfs SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]`, parsed once into a
// plain struct. Every documented -o option is recognised here, including the replication
// ones the filesystem itself ignores (the replicator reads them from this struct), so an
// unknown or malformed option fails the mount with one clear line instead of being passed
// to the kernel. Options meant for the kernel/libfuse are collected in `fuse_options`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace sfs::fs {

struct MountOptions {
    std::string source;      // as given
    std::string mountpoint;  // as given
    bool foreground = false; // -f
    bool debug = false;      // -d (implies -f, FUSE request tracing at debug level)
    bool help = false;       // -h/--help
    bool version = false;    // -V/--version

    // Replication (consumed by the replicator, not by fs/).
    std::vector<std::string> mirrors;   // mirror=URL, repeatable, ';'-separated
    std::string secrets;                // secrets=FILE
    std::string state;                  // state=DIR ("" = default under /var/lib/syncfs)
    bool sync = false;                  // sync: fsync waits for the mirrors
    std::uint32_t delay_ms = 0;         // delay=MS
    std::uint32_t mirror_timeout_s = 120;  // mirror_timeout=SECONDS: dead mirror connection
    std::uint64_t journal_max = 1ull << 30;  // journal_max=SIZE: cap on the journal's disk use
    std::vector<std::string> excludes;  // exclude=PATTERN, repeatable
    std::string log_file;               // log=FILE
    std::string watch = "auto";         // watch=off|auto|fanotify|inotify (outside-mount watcher)

    // Filesystem behaviour.
    std::uint32_t max_fds = 4096;       // max_fds=N: cap on fds the daemon holds open
    double timeout = 30.0;              // timeout=SECONDS: entry/attr cache lifetime
    bool writeback = true;              // writeback / no_writeback: kernel writeback cache
    unsigned max_threads = 8;           // threads=N: FUSE worker threads

    // Kernel/libfuse options we also need to know about.
    bool allow_other = false;
    bool default_permissions = false;
    bool read_only = false;
    bool noatime = false;

    // Everything passed on to libfuse as `-o a,b,c` (fsname/subtype added by the session).
    std::vector<std::string> fuse_options;
};

// Parses argv (argv[0] is the program). Errors are one line, e.g.
// "unknown option 'foo'" or "max_fds=abc: not a number".
Result<MountOptions> parse_command_line(int argc, const char* const* argv);

// Parses one -o argument (comma-separated, '\,' escapes a comma) into `out`.
Result<void> parse_option_list(const std::string& list, MountOptions& out);

// The usage text for --help.
std::string usage(const char* program);

}  // namespace sfs::fs
