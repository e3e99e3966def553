#include "server/rsync/filter.h"

#include <fnmatch.h>

namespace sfs::server::rsync {

namespace {
constexpr std::int32_t kMaxRuleLen = 4096;
constexpr std::size_t kMaxRules = 10000;
}  // namespace

Result<void> FilterList::receive(protocol::WireReader& in) {
    for (;;) {
        auto len = in.read_i32();
        if (!len) return std::unexpected(len.error());
        if (*len == 0) return {};
        if (rules_.size() >= kMaxRules) return fail("protocol error: more than 10000 exclude rules");
        auto rule = in.read_bytes(*len, kMaxRuleLen, "exclude rule");
        if (!rule) return std::unexpected(rule.error());
        add(*rule);
    }
}

void FilterList::add(std::string_view r) {
    Rule rule;
    if (r.starts_with("- ")) r.remove_prefix(2);
    else if (r.starts_with("+ ")) { rule.include = true; r.remove_prefix(2); }
    else if (r == "!") { rules_.clear(); return; }
    if (r.empty()) return;
    if (r.front() == '/') { rule.anchored = true; r.remove_prefix(1); }
    if (r.size() > 4 && r.ends_with("/***")) { rule.subtree = true; r.remove_suffix(4); }
    if (!r.empty() && r.back() == '/') { rule.dir_only = true; r.remove_suffix(1); }
    rule.pattern = std::string(r);
    rule.has_slash = rule.pattern.find('/') != std::string::npos;
    rule.double_star = rule.pattern.find("**") != std::string::npos;
    rules_.push_back(std::move(rule));
}

bool FilterList::matches(const Rule& r, const std::string& path, bool is_dir) {
    if (r.dir_only && !is_dir) return false;
    int flags = r.double_star ? 0 : FNM_PATHNAME;
    if (r.anchored) return fnmatch(r.pattern.c_str(), path.c_str(), flags) == 0;
    if (!r.has_slash) {
        auto slash = path.rfind('/');
        std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
        return fnmatch(r.pattern.c_str(), base.c_str(), flags) == 0;
    }
    // Match the whole path or any tail starting after a '/'.
    std::size_t pos = 0;
    for (;;) {
        if (fnmatch(r.pattern.c_str(), path.c_str() + pos, flags) == 0) return true;
        auto next = path.find('/', pos);
        if (next == std::string::npos) return false;
        pos = next + 1;
    }
}

bool FilterList::excluded(const std::string& path, bool is_dir) const {
    for (const Rule& r : rules_) {
        bool hit = false;
        if (r.subtree) {
            // The directory PAT names (any leading part of `path`) or `path` itself.
            for (std::size_t s = path.find('/'); s != std::string::npos && !hit; s = path.find('/', s + 1))
                hit = matches(r, path.substr(0, s), true);
            hit = hit || matches(r, path, is_dir || !r.dir_only);
        } else {
            hit = matches(r, path, is_dir);
        }
        if (hit) return !r.include;
    }
    return false;
}

}  // namespace sfs::server::rsync
