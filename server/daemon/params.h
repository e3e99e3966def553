// Every syncfsd.conf (rsyncd.conf) parameter, declared once.
//
// kParams is the single source of truth: the loader (config.cc) looks names up in it,
// validates values by its type, falls back to its default; the man page test checks that
// every entry is documented in man/syncfsd.conf.5. Adding a parameter = one line here plus
// whatever code reads it through DaemonConfig / ModuleConfig accessors.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace sfs::server {

enum class Scope { global, module };
// boolean: yes/no/true/false/1/0. tristate: a boolean that may stay unset (its default
// depends on the situation, e.g. `use chroot`). integer: >= 0. string/path: as written.
enum class ParamType { string, path, boolean, tristate, integer };

// Indexes into kParams; keep the order identical.
enum class P : std::size_t {
    // global
    pid_file, port, address, motd_file, log_file,
    // module (also allowed in the global section as defaults for every module)
    path, comment, read_only, write_only, list, hosts_allow, hosts_deny, auth_users,
    secrets_file, strict_modes, uid, gid, use_chroot, munge_symlinks, max_connections,
    lock_file, ignore_errors, numeric_ids, timeout, dont_compress, refuse_options, exclude,
    reverse_lookup, forward_lookup, syncfs_state_dir, include, filter, transfer_logging,
    log_format, max_verbosity, incoming_chmod, outgoing_chmod, include_from, exclude_from,
    pre_xfer_exec, post_xfer_exec, early_exec, auth_digest, name_converter,
    count_
};

struct ParamInfo {
    std::string_view name;       // canonical spelling, as in the man page
    Scope scope;
    ParamType type;
    std::optional<std::string_view> default_value;  // nullopt: unset
    std::string_view doc;        // one-line summary
};

inline constexpr std::size_t kParamCount = static_cast<std::size_t>(P::count_);

extern const std::array<ParamInfo, kParamCount> kParams;

// Looks up a normalized name (see config::normalize_key); nullopt if unknown.
std::optional<P> find_param(std::string_view norm_key);

inline const ParamInfo& info(P p) { return kParams[static_cast<std::size_t>(p)]; }

}  // namespace sfs::server
