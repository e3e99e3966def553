// -o exclude=PATTERN matching for the watcher. A pattern containing '/' is matched
// (fnmatch, FNM_PATHNAME) against the whole relative path; one without '/' against each
// path component, so "*.tmp" excludes a.tmp at any depth and "cache" excludes every
// directory named cache with its subtree. A path is excluded when it or any ancestor is.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sfs::repl::watch {

class ExcludeList {
public:
    ExcludeList() = default;
    explicit ExcludeList(std::vector<std::string> patterns);

    bool empty() const noexcept { return patterns_.empty(); }
    // True when `path` (relative to SOURCE) or one of its ancestors matches a pattern.
    bool excluded(std::string_view path) const;

private:
    std::vector<std::string> patterns_;
};

}  // namespace sfs::repl::watch
