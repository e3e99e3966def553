// Coalescing of a batch of outside changes for the replicator (see docs/watcher.md).
//
// Input: changes in the order the watcher delivered them. Output, same order:
//  - Overflow subtrees first, nested ones collapsed into their top-most ancestor;
//  - then the remaining changes, minus every change whose path lies in an Overflow'd
//    subtree (a Renamed with only one side inside one becomes Deleted/Created of the other
//    side, or disappears if both are covered);
//  - Modified/Attrib/Created/DirCreated on the same path are merged into the first one
//    ("sync this path", strongest kind kept: DirCreated > Created > Modified > Attrib),
//    but never across a Renamed or Deleted that touches the path or an ancestor, because
//    the order of namespace changes matters to the mirror.
#pragma once

#include <vector>

#include "replicator/watch/outside_change.h"

namespace sfs::repl::watch {

std::vector<OutsideChange> coalesce(const std::vector<OutsideChange>& batch);

}  // namespace sfs::repl::watch
