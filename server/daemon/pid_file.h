// The daemon's pid file: written once the daemon runs (after detaching), removed on exit.
// A pid file naming a live process refuses the start ("already running"); a stale one from
// a crash is replaced, so an unclean stop never needs operator action.
#pragma once

#include <string>

#include "common/result.h"

namespace sfs::server {

class PidFile {
public:
    PidFile() = default;
    PidFile(const PidFile&) = delete;
    PidFile& operator=(const PidFile&) = delete;
    ~PidFile() { remove(); }

    // Writes getpid() to `path` atomically (temp file + rename).
    Result<void> create(const std::string& path);
    // Removes the file if it still holds our pid. Idempotent.
    void remove() noexcept;

private:
    std::string path_;
};

}  // namespace sfs::server
