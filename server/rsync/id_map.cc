#include "server/rsync/id_map.h"

#include <fnmatch.h>
#include <charconv>

namespace sfs::server::rsync {
namespace {

constexpr std::size_t kMaxRules = 1024;

std::optional<std::uint32_t> number(std::string_view s) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::optional<std::uint32_t> local_id(const std::string& name, bool groups, IdNameLookup& ids) {
    if (auto n = number(name)) return n;
    return groups ? ids.group_id(name) : ids.user_id(name);
}

}  // namespace

Result<std::vector<IdMapRule>> parse_id_map(std::string_view spec, bool groups, IdNameLookup& ids) {
    const std::string opt = groups ? "--groupmap" : "--usermap";
    std::vector<IdMapRule> rules;
    while (!spec.empty()) {
        auto comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
        if (item.empty()) continue;
        if (rules.size() >= kMaxRules) return fail(opt + " has more than 1024 rules");
        auto colon = item.rfind(':');
        if (colon == std::string_view::npos)
            return fail("No colon found in " + opt + ": " + std::string(item.substr(0, 256)));
        std::string from(item.substr(0, colon)), to(item.substr(colon + 1));
        IdMapRule r;
        auto t = local_id(to, groups, ids);
        if (!t) return fail(std::string("Unknown ") + (groups ? "group" : "user") + " name: " + to.substr(0, 256));
        r.to = *t;
        if (from == "*") {
            r.kind = IdMapRule::Kind::any;
        } else if (!from.empty() && from[0] >= '0' && from[0] <= '9') {
            auto dash = from.find('-');
            auto lo = number(std::string_view(from).substr(0, dash));
            auto hi = dash == std::string::npos ? lo : number(std::string_view(from).substr(dash + 1));
            if (!lo || !hi || *hi < *lo) return fail("Invalid number in " + opt + ": " + from.substr(0, 256));
            r.kind = IdMapRule::Kind::range;
            r.lo = *lo;
            r.hi = *hi;
        } else if (!from.empty()) {
            r.kind = IdMapRule::Kind::name;
            r.pattern = from;
        } else {
            return fail("Empty name in " + opt);
        }
        rules.push_back(std::move(r));
    }
    return rules;
}

std::optional<std::uint32_t> map_id(const std::vector<IdMapRule>& rules, std::uint32_t id, const std::string& name) {
    for (const auto& r : rules) {
        switch (r.kind) {
        case IdMapRule::Kind::any: return r.to;
        case IdMapRule::Kind::range:
            if (id >= r.lo && id <= r.hi) return r.to;
            break;
        case IdMapRule::Kind::name:
            if (!name.empty() && ::fnmatch(r.pattern.c_str(), name.c_str(), 0) == 0) return r.to;
            break;
        }
    }
    return std::nullopt;
}

}  // namespace sfs::server::rsync
