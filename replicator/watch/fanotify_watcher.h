// fanotify backend: one FAN_MARK_FILESYSTEM mark on SOURCE's filesystem, events reported
// with directory file handles + names (FAN_REPORT_DFID_NAME), resolved to paths with
// open_by_handle_at + readlink(/proc/self/fd/N). Events of other directories on the same
// filesystem are dropped after resolution; events whose pid is options.ignore_pid are
// syncfs's own and dropped before. See docs/watcher.md for the queue and rename decisions.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "replicator/watch/watcher_core.h"

namespace sfs::repl::watch {

// Fails (with the reason) when fanotify cannot be used here: not root, kernel too old,
// or the filesystem refuses FAN_MARK_FILESYSTEM. `root` is the watcher's own SOURCE fd.
Result<std::unique_ptr<Watcher>> start_fanotify(UniqueFd root, std::string source_path,
                                                WatchOptions options, OutsideChangeSink& sink);

}  // namespace sfs::repl::watch
