// The client's exclude list (protocol < 29 "old prefixes": "- PATTERN", "+ PATTERN",
// a bare pattern excludes, "!" clears). A subset of rsync's filter rules: wildcards via
// fnmatch, a leading '/' anchors at the transfer root, a trailing '/' matches directories
// only, a pattern without '/' matches the last component, "**" crosses '/'.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"
#include "protocol/rsync_wire.h"

namespace sfs::server::rsync {

class FilterList {
public:
    // recv_filter_list(): int32 length + rule until 0; bounded in count and length.
    Result<void> receive(protocol::WireReader& in);
    void add(std::string_view rule);
    // True when `path` (relative to the transfer root) is excluded.
    bool excluded(const std::string& path, bool is_dir) const;
    bool empty() const { return rules_.empty(); }

private:
    struct Rule {
        bool include = false;
        bool anchored = false;
        bool dir_only = false;
        bool has_slash = false;
        bool double_star = false;
        bool subtree = false;   // "PAT/***": PAT itself and everything below it
        std::string pattern;
    };
    static bool matches(const Rule& r, const std::string& path, bool is_dir);
    std::vector<Rule> rules_;
};

}  // namespace sfs::server::rsync
