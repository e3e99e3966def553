// ListRequest: the mirror tree as reconcile sees it (like the file list of `rsync -a`).
//
// Walks beneath the root without following symlinks: each directory is opened from its
// parent's fd with O_NOFOLLOW on a single component, so nothing outside the module is ever
// read. Siblings are sorted by byte order of name; the order is depth-first pre-order.
// Vanished entries (a race with our own session cannot happen; with local users it can) are
// skipped; unreadable directories are skipped and reported in the returned `incomplete`
// message so reconcile never deletes on the strength of a partial listing.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>

#include "common/result.h"
#include "protocol/native/messages.h"

namespace sfs::server::native {

struct ListOptions {
    bool unmunge_symlinks = false;  // strip kMungePrefix from targets (module munges)
    // A directory never listed (the state dir when it lies inside the module).
    std::optional<std::pair<dev_t, ino_t>> skip;
};

struct ListOutcome {
    std::uint64_t entries = 0;
    std::string incomplete;  // non-empty: the first problem that made the listing partial
};

// Err only when the request's own path cannot be listed (ENOENT etc.) or emit fails.
Result<ListOutcome> list_tree(int root, const protocol::native::ListRequest& req, const ListOptions& options,
                              const std::function<Result<void>(protocol::native::ListEntry&&)>& emit);

}  // namespace sfs::server::native
