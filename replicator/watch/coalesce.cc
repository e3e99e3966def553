#include "replicator/watch/coalesce.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "replicator/watch/paths.h"

namespace sfs::repl::watch {
namespace {

using Kind = OutsideChange::Kind;

int strength(Kind k) {
    switch (k) {
        case Kind::DirCreated: return 3;
        case Kind::Created: return 2;
        case Kind::Modified: return 1;
        default: return 0;
    }
}

bool is_sync_kind(Kind k) {
    return k == Kind::Modified || k == Kind::Attrib || k == Kind::Created || k == Kind::DirCreated;
}

// The top-most overflowed subtrees, sorted.
std::vector<std::string> overflow_roots(const std::vector<OutsideChange>& batch) {
    std::set<std::string> all;
    for (const auto& c : batch) {
        if (c.kind == Kind::Overflow) all.insert(c.path);
    }
    std::vector<std::string> roots;
    for (const auto& p : all) {  // sorted: an ancestor comes before its descendants
        bool covered = std::any_of(roots.begin(), roots.end(), [&](const std::string& r) { return is_same_or_under(p, r); });
        if (!covered) roots.push_back(p);
    }
    return roots;
}

bool covered_by(const std::string& path, const std::vector<std::string>& roots) {
    return std::any_of(roots.begin(), roots.end(), [&](const std::string& r) { return is_same_or_under(path, r); });
}

// Forgets merge slots for `path` and everything below it.
void erase_subtree(std::map<std::string, std::size_t>& slots, const std::string& path) {
    for (auto it = slots.lower_bound(path); it != slots.end() && it->first.starts_with(path);) {
        it = is_same_or_under(it->first, path) ? slots.erase(it) : std::next(it);
    }
}

}  // namespace

std::vector<OutsideChange> coalesce(const std::vector<OutsideChange>& batch) {
    std::vector<OutsideChange> out;
    const auto roots = overflow_roots(batch);
    for (const auto& r : roots) out.push_back(OutsideChange{Kind::Overflow, r, {}, true});

    std::map<std::string, std::size_t> slot;  // path -> index in out of its merged sync change
    for (OutsideChange c : batch) {
        if (c.kind == Kind::Overflow) continue;
        if (c.kind == Kind::Renamed) {
            const bool from_covered = covered_by(c.path, roots);
            const bool to_covered = covered_by(c.path2, roots);
            if (from_covered && to_covered) continue;
            if (from_covered) {
                c = OutsideChange{c.is_dir ? Kind::DirCreated : Kind::Created, c.path2, {}, c.is_dir};
            } else if (to_covered) {
                c = OutsideChange{Kind::Deleted, c.path, {}, c.is_dir};
            }
        } else if (covered_by(c.path, roots)) {
            continue;
        }
        if (c.kind == Kind::Renamed || c.kind == Kind::Deleted) {
            erase_subtree(slot, c.path);
            if (c.kind == Kind::Renamed) erase_subtree(slot, c.path2);
            out.push_back(std::move(c));
            continue;
        }
        if (is_sync_kind(c.kind)) {
            if (auto it = slot.find(c.path); it != slot.end()) {
                OutsideChange& merged = out[it->second];
                if (strength(c.kind) > strength(merged.kind)) merged.kind = c.kind;
                merged.is_dir = merged.is_dir || c.is_dir;
                continue;
            }
            slot.emplace(c.path, out.size());
        }
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace sfs::repl::watch
