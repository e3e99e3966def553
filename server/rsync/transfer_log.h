// `transfer logging` (rsyncd.conf): one log line per file a session sends or receives,
// formatted like rsync log.c log_formatted() with the module's `log format`.
//
// Protocol 27 carries no itemize flags, so %i is what rsync itself logs there:
// ITEM_TRANSFER|ITEM_MISSING_DATA, i.e. "<f?????????" for a file sent to the client and
// ">f?????????" for one received (the type letter is d/L/D/S for other entries).
// Unknown %-escapes are copied literally; the line is bounded to 4 KiB and control bytes
// in names become '?', so a hostile file name cannot forge log lines.
#pragma once

#include <cstdint>
#include <string>

#include "protocol/rsync_flist.h"

namespace sfs::server {
struct ModuleAccess;
}

namespace sfs::server::rsync {

struct TransferLogItem {
    bool sent = false;            // "send" (pull) or "recv" (push)
    std::string module_path;      // %f: relative to the module root
    std::string name;             // %n: relative to the transfer root
    const protocol::FileEntry* entry = nullptr;
    std::int64_t bytes = 0;       // %b: bytes moved on the wire for this file
};

std::string format_transfer_log(const std::string& format, const ModuleAccess& module, const TransferLogItem& item);

// Logs the line through spdlog when the module has `transfer logging` on.
void log_transfer(const ModuleAccess& module, const TransferLogItem& item);

}  // namespace sfs::server::rsync
