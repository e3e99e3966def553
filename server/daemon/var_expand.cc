#include "server/daemon/var_expand.h"

#include <unistd.h>

#include <cstring>

extern char** environ;

namespace sfs::server {
namespace {

constexpr std::size_t kMaxExpanded = 64 * 1024;

enum class Quote { none, single, dbl };

bool shell_unsafe(std::string_view v) {
    for (char c : v) {
        auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || std::strchr("'\"`$\\;&|<>()*?[]# !~{}", c)) return true;
    }
    return false;
}

// A value that passed shell_unsafe() has no quote, backslash or dollar left, so wrapping it
// in single quotes (outside '...') is enough; inside '...' it stays bare.
std::string shell_quoted(std::string_view v, Quote ctx) {
    if (ctx == Quote::single) return std::string(v);
    return "'" + std::string(v) + "'";
}

}  // namespace

HookEnv process_environment() {
    HookEnv env;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv = *e;
        auto eq = kv.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return env;
}

Result<std::string> expand_vars(std::string_view str, const HookEnv& env, bool for_shell) {
    std::string out;
    Quote q = Quote::none;
    bool escaped = false;
    for (std::size_t i = 0; i < str.size();) {
        if (out.size() > kMaxExpanded) return fail("expansion of '" + std::string(str.substr(0, 80)) + "' is too long");
        char c = str[i];
        if (c == '%' && i + 1 < str.size() && str[i + 1] >= 'A' && str[i + 1] <= 'Z') {
            auto close = str.find('%', i + 1);
            if (close != std::string_view::npos) {
                std::string_view name = str.substr(i + 1, close - i - 1);
                if (auto it = env.find(name); it != env.end()) {
                    const std::string& val = it->second;
                    if (for_shell && name.starts_with("RSYNC_")) {
                        if (shell_unsafe(val))
                            return fail("refusing to run shell hook: %" + std::string(name) +
                                        "% holds a shell metacharacter");
                        out += shell_quoted(val, q);
                    } else {
                        out += val;
                    }
                    i = close + 1;
                    continue;
                }
            }
        }
        if (for_shell) {
            // Track the quote context the next value would land in (rsync's tracker).
            if (q == Quote::single) {
                if (c == '\'') q = Quote::none;
            } else if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (q == Quote::dbl) {
                if (c == '"') q = Quote::none;
            } else if (c == '\'') {
                q = Quote::single;
            } else if (c == '"') {
                q = Quote::dbl;
            }
        }
        out.push_back(c);
        ++i;
    }
    if (out.size() > kMaxExpanded) return fail("expansion of '" + std::string(str.substr(0, 80)) + "' is too long");
    return out;
}

}  // namespace sfs::server
