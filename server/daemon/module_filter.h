// The module's own filter rules (rsync clientserver.c rsync_module(): `filter`, then
// `include`, then `exclude`, each split into words, XFLG_ABS_IF_SLASH | XFLG_OLD_PREFIXES).
//
// Output: rules for server/rsync FilterList ("- PAT" / "+ PAT"). A pattern containing '/'
// (other than a trailing one) is anchored at the module root, as rsync does for daemon
// rules; "- " / "+ " before a word set its kind; `filter` words without a prefix are
// skipped with a warning (rsync would reject the config), "!" clears the list.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sfs::server {

// `include_from` / `exclude_from`: lines of the `include from` / `exclude from` files
// (rsync parse_filter_file(): one pattern per line, not split, not anchored by a '/').
std::vector<std::string> module_filter_rules(const std::string& filter, const std::string& include,
                                             const std::string& exclude, std::vector<std::string>& warnings,
                                             const std::vector<std::string>& include_from = {},
                                             const std::vector<std::string>& exclude_from = {});

// Reads a filter file: at most 1 MiB, blank and '#'/';' lines dropped. nullopt + `error`
// when it cannot be read.
std::optional<std::vector<std::string>> read_filter_file(const std::string& path, std::string& error);

}  // namespace sfs::server
