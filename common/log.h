// Logging setup. Every program logs through spdlog's default logger; this file only
// decides where it goes: stderr in the foreground, a file (log=FILE / --log-file), or syslog.
#pragma once

#include <string>

#include "common/result.h"

namespace sfs {

struct LogOptions {
    std::string program;       // ident for syslog and the logger name
    std::string file;          // non-empty: append to this file
    bool use_syslog = false;   // when file is empty and not in the foreground
    bool debug = false;        // -d: debug level
};

// Installs the default logger. Returns an error naming the file if it cannot be opened.
Result<void> init_logging(const LogOptions& options);

}  // namespace sfs
