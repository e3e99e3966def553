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
//
// reconcile_paths() does the same for single paths and subtrees named by journaled outside
// changes (Verify records, docs/watcher.md): the rules are shared, only the part of the tree
// listed and walked differs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.h"
#include "replicator/mirror_replicator.h"

namespace sfs::repl {

bool excluded(const std::vector<std::string>& patterns, const std::string& path);

Result<void> reconcile_tree(MirrorChannel& channel, int source_dirfd, const std::vector<std::string>& excludes,
                            bool checksum, bool xattrs);

// One journaled Verify record (an outside change, docs/watcher.md): make the mirror's `path`
// equal SOURCE's current `path` -- and everything below it when `subtree`, or when it is a
// directory the mirror lacks. A path SOURCE lacks is deleted on the mirror (with its subtree).
struct VerifyItem {
    std::string path;
    bool subtree = false;
    std::uint64_t record = 0;  // journal seq: channel.set_record(record) before its mutations
};

struct VerifyOutcome {
    std::uint64_t verified = 0;    // items looked at (after dropping covered ones)
    std::uint64_t changed = 0;     // mirror entries created, replaced, deleted or fixed
    std::uint64_t bytes = 0;       // content bytes sent
    std::uint64_t unreadable = 0;  // SOURCE entries that could not be read (logged; a later change retries)
    // Something only the whole-tree pass can do right: a listing that failed.
    bool needs_full = false;
    // Directories outside the items whose entries changed (other names of a hard-linked
    // file): their mtimes are to be set from SOURCE like the items' parents.
    std::vector<std::string> touched_dirs;
};

// Verifies a batch of items in journal order: their listings are fetched in one pipelined
// round trip; items inside a subtree item of the batch are covered by it. Error: only a
// lost connection (code ENOTCONN) -- the records are then replayed.
// `content_check(path)`: compare that regular file by content (XXH3-128 on both sides) when
// size and mtime agree. The sender asks it for files whose Write records it sent with
// SOURCE's size and mtime *at send time*: an outside change made before that send is then
// stamped on the mirror without its bytes outside the written ranges, and the quick check
// alone would take the mirror's copy for equal.
Result<VerifyOutcome> reconcile_paths(MirrorChannel& channel, int source_dirfd, const std::vector<std::string>& excludes,
                                      std::vector<VerifyItem> items, bool xattrs,
                                      const std::function<bool(const std::string&)>& content_check = {});

}  // namespace sfs::repl
