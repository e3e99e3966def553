// inotify backend: a watch on every directory of SOURCE (excluded subtrees skipped),
// maintained across mkdir, renames and moves in/out. See docs/watcher.md.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "replicator/watch/watcher_core.h"

namespace sfs::repl::watch {

// Walks SOURCE adding watches, then starts the reader thread. `root` is the watcher's own
// SOURCE fd. Watch-limit failures during the initial walk do not fail start(): they are
// reported as Overflow of the subtree and kept in status, like later ones.
Result<std::unique_ptr<Watcher>> start_inotify(UniqueFd root, std::string source_path, WatchOptions options,
                                               OutsideChangeSink& sink);

}  // namespace sfs::repl::watch
