// Relative-path helpers shared by the watcher parts. Paths are relative to SOURCE, no
// leading '/', root = "".
#pragma once

#include <string>
#include <string_view>

namespace sfs::repl::watch {

// parent + '/' + name, or name when parent is the root.
inline std::string join_path(std::string_view parent, std::string_view name) {
    std::string out;
    out.reserve(parent.size() + name.size() + 1);
    out.append(parent);
    if (!parent.empty()) out.push_back('/');
    out.append(name);
    return out;
}

// True when `path` equals `dir` or lies below it. Every path is under the root "".
inline bool is_same_or_under(std::string_view path, std::string_view dir) noexcept {
    if (dir.empty()) return true;
    if (!path.starts_with(dir)) return false;
    return path.size() == dir.size() || path[dir.size()] == '/';
}

}  // namespace sfs::repl::watch
