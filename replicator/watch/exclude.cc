#include "replicator/watch/exclude.h"

#include <fnmatch.h>

namespace sfs::repl::watch {

ExcludeList::ExcludeList(std::vector<std::string> patterns) {
    for (auto& p : patterns) {
        while (p.starts_with('/')) p.erase(0, 1);  // anchored at SOURCE either way
        while (p.size() > 1 && p.ends_with('/')) p.pop_back();
        if (!p.empty()) patterns_.push_back(std::move(p));
    }
}

bool ExcludeList::excluded(std::string_view path) const {
    if (patterns_.empty() || path.empty()) return false;
    std::string prefix;
    std::size_t pos = 0;
    while (pos <= path.size()) {
        std::size_t slash = path.find('/', pos);
        if (slash == std::string_view::npos) slash = path.size();
        std::string component(path.substr(pos, slash - pos));
        prefix.assign(path.substr(0, slash));
        for (const auto& p : patterns_) {
            const bool whole = p.find('/') != std::string::npos;
            const std::string& subject = whole ? prefix : component;
            if (::fnmatch(p.c_str(), subject.c_str(), whole ? FNM_PATHNAME : 0) == 0) return true;
        }
        pos = slash + 1;
    }
    return false;
}

}  // namespace sfs::repl::watch
