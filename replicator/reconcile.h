// Reconcile: make one mirror equal to SOURCE, like `rsync -aHX --delete`.
//
// Compares the mirror's listing with a walk of SOURCE: quick check by type, size and mtime
// (and the XXH3-128 of the content when `checksum`, after an unclean stop); deletes what
// SOURCE lacks (deepest first; never on an incomplete listing), creates what the mirror
// lacks, sends content for changed files as a librsync delta against the mirror's copy
// (literal for new or small files), fixes modes/owners, links hardlinks, and sets directory
// mtimes last (deepest first). With `xattrs` (a mirror of native protocol 2 or later) the
// listing carries each node's xattr names and digest, and a node whose extended attributes
// differ gets SOURCE's set: Removexattr for names SOURCE lacks, Setxattr for the rest.
// Excluded paths (fnmatch on the relative path, or on the name
// when the pattern has no '/') are neither sent nor deleted. Progress goes to channel.progress().
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "replicator/mirror_replicator.h"

namespace sfs::repl {

bool excluded(const std::vector<std::string>& patterns, const std::string& path);

Result<void> reconcile_tree(MirrorChannel& channel, int source_dirfd, const std::vector<std::string>& excludes,
                            bool checksum, bool xattrs);

}  // namespace sfs::repl
