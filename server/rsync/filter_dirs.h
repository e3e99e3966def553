// Per-directory merge files (dir-merge `:` rules; rsync exclude.c push_local_filters /
// pop_local_filters / change_local_filter_dir).
//
// Design note. A walk (the sender's file-list scan, the receiver's --delete pass) keeps one
// Level per directory from its transfer root down to the directory it is in. Entering a
// directory reads, for every dir-merge rule of the FilterList, that directory's merge file
// (through the MergeReader: confined beneath the module, no symlinks, hidden when the
// daemon's rules hide the path, at most 1 MiB). Checking a name at a dir-merge placeholder
// consults the rules of the innermost directory first, then the inherited ones outwards
// (not past a level whose file had a "!" clear; only the innermost with `n`). Rules anchored
// with '/' in a per-directory file are relative to that file's directory. The live rules of
// all levels are bounded (kMaxLiveRules); more is an error that ends the walk.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "server/rsync/filter.h"

namespace sfs::server::rsync {

struct Context;

class DirFilterStack {
public:
    DirFilterStack(const FilterList& list, MergeReader read) : list_(list), read_(std::move(read)) {}

    // False when the list has no dir-merge rule (then push/pop are no-ops).
    bool active() const { return !list_.dir_merges().empty(); }

    // Enters directory `wire_dir` (relative to the transfer root, "." for it) found at
    // module path `local_dir`: reads its merge files.
    Result<void> push(const std::string& wire_dir, const std::string& local_dir);
    void pop();
    // For a walk that is not in tree order (the delete pass visits the list's directories
    // in sorted order): leaves the levels that are not ancestors of `wire_dir` and enters
    // the missing ones down to it. `local_of` maps a wire dir to its module path.
    Result<void> move_to(const std::string& wire_dir, const std::function<std::string(const std::string&)>& local_of);

    // The verdict of dir-merge rule `merge` for `path` (relative to the transfer root, an
    // entry of the innermost directory): true excluded, false included, nullopt no match.
    std::optional<bool> check(int merge, const std::string& path, bool is_dir, const FilterList& list) const;

    static constexpr std::size_t kMaxLiveRules = 100000;
    static constexpr std::size_t kMaxMergeFilesPerDir = 64;         // a directory's merge files, nested ones included
    static constexpr std::size_t kMaxMergeBytesPerDir = 4u << 20;   // and their text

private:
    struct Level {
        std::string wire_dir;
        std::vector<std::vector<FilterRule>> rules;   // per dir-merge rule
        std::vector<bool> cleared;                    // a "!" stops inheritance
        std::size_t count = 0;
    };
    const FilterList& list_;
    MergeReader read_;
    std::vector<Level> levels_;
    std::size_t live_ = 0;
};

// The MergeReader of a session: module paths, opened beneath the module root without
// following any symlink, hidden when the daemon's rules exclude the path or a parent.
MergeReader module_merge_reader(const Context& ctx);

}  // namespace sfs::server::rsync
