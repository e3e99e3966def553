// The module's own filter rules (rsync clientserver.c rsync_module(): `filter`, then
// `include`, then `exclude`, each split into words, XFLG_ABS_IF_SLASH | XFLG_OLD_PREFIXES).
//
// Output: rules for server/rsync FilterList ("- PAT" / "+ PAT"). A pattern containing '/'
// (other than a trailing one) is anchored at the module root, as rsync does for daemon
// rules; "- " / "+ " before a word set its kind; `filter` words without a prefix are
// skipped with a warning (rsync would reject the config), "!" clears the list.
#pragma once

#include <string>
#include <vector>

namespace sfs::server {

std::vector<std::string> module_filter_rules(const std::string& filter, const std::string& include,
                                             const std::string& exclude, std::vector<std::string>& warnings);

}  // namespace sfs::server
