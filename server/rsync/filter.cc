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
    if (!r.empty() && r.back() == '/') { rule.dir_only = true; r.remove_suffix(1); }
    rule.pattern = std::string(r);
    rule.has_slash = rule.pattern.find('/') != std::string::npos;
    rule.double_star = rule.pattern.find("**") != std::string::npos;
    rules_.push_back(std::move(rule));
}

bool FilterList::excluded(const std::string& path, bool is_dir) const {
    for (const Rule& r : rules_) {
        if (r.dir_only && !is_dir) continue;
        int flags = r.double_star ? 0 : FNM_PATHNAME;
        bool hit = false;
        if (r.anchored) {
            hit = fnmatch(r.pattern.c_str(), path.c_str(), flags) == 0;
        } else if (!r.has_slash) {
            auto slash = path.rfind('/');
            std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
            hit = fnmatch(r.pattern.c_str(), base.c_str(), flags) == 0;
        } else {
            // Match the whole path or any tail starting after a '/'.
            std::size_t pos = 0;
            for (;;) {
                if (fnmatch(r.pattern.c_str(), path.c_str() + pos, flags) == 0) { hit = true; break; }
                auto next = path.find('/', pos);
                if (next == std::string::npos) break;
                pos = next + 1;
            }
        }
        if (hit) return !r.include;
    }
    return false;
}

}  // namespace sfs::server::rsync
