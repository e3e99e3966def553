// Wildcards in the path arguments of a pull (rsync util1.c glob_expand() on the daemon
// side): `rsync host::mod/f*` lists every top-level entry of the module starting with 'f'.
//
// Contract: `pattern` is module-relative and already sanitized (module_relative_arg).
// Expansion walks the module through ModuleRoot (openat2 beneath the root), one component
// at a time, so a wildcard never reaches outside the module. As glob(3): '*', '?', '[...]'
// with FNM_PATHNAME|FNM_PERIOD (a leading '.' must be matched literally), results sorted,
// and a pattern that matches nothing is returned unchanged (the sender then reports it as
// missing). A trailing '/' is kept on every result. Bounded: at most kMaxGlobResults names.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/rsync/beneath.h"

namespace sfs::server::rsync {

// A path argument as the client escaped it for a shell (options.c safe_arg: "a\\ b"),
// backslashes removed (a backslash before the last byte is kept).
inline std::string unbackslash(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        out.push_back(s[i]);
    }
    return out;
}


inline constexpr std::size_t kMaxGlobResults = 100000;

bool has_wildcards(const std::string& s);
std::vector<std::string> expand_arg_glob(const ModuleRoot& root, const std::string& pattern);

}  // namespace sfs::server::rsync
