#include "server/daemon/params.h"

#include "common/config/conf_file.h"

namespace sfs::server {

using enum Scope;
using enum ParamType;

// Order must match enum P. Defaults follow rsyncd(5) unless noted in docs/syncfsd.md.
const std::array<ParamInfo, kParamCount> kParams = {{
    {"pid file", global, path, std::nullopt, "write the daemon's pid to this file; removed on exit"},
    {"port", global, integer, "873", "TCP port to listen on (overridden by --port)"},
    {"address", global, string, std::nullopt, "local address to bind (overridden by --address); default all"},
    {"motd file", global, path, std::nullopt, "text sent to every client before the module reply"},
    {"log file", global, path, std::nullopt, "log to this file instead of syslog"},

    {"path", module, path, std::nullopt, "directory the module serves (required)"},
    {"comment", module, string, "", "text shown next to the module name in the listing"},
    {"read only", module, boolean, "yes", "refuse uploads (pushes) to the module"},
    {"write only", module, boolean, "no", "refuse downloads (pulls) from the module"},
    {"list", module, boolean, "yes", "show the module in the module listing"},
    {"hosts allow", module, string, std::nullopt, "patterns of clients allowed to connect"},
    {"hosts deny", module, string, std::nullopt, "patterns of clients refused"},
    {"auth users", module, string, std::nullopt, "users (or @groups) that must authenticate"},
    {"secrets file", module, path, std::nullopt, "user:password lines used for authentication"},
    {"strict modes", module, boolean, "yes", "refuse a secrets file readable by others"},
    {"uid", module, string, std::nullopt, "user the transfer runs as when started as root (default nobody)"},
    {"gid", module, string, std::nullopt, "group(s) the transfer runs as when started as root (default nogroup)"},
    {"use chroot", module, tristate, std::nullopt, "chroot to the module path before the transfer"},
    {"munge symlinks", module, tristate, std::nullopt, "store symlinks with a /rsyncd-munged/ prefix"},
    {"max connections", module, integer, "0", "simultaneous connections to the module; 0 = unlimited"},
    {"lock file", module, path, "/run/syncfsd.lock", "file whose byte-range locks count connections"},
    {"ignore errors", module, boolean, "no", "let --delete proceed despite I/O errors"},
    {"numeric ids", module, tristate, std::nullopt, "do not map user and group names"},
    {"timeout", module, integer, "0", "I/O timeout in seconds for a transfer; 0 = none"},
    {"dont compress", module, string, std::nullopt, "patterns of files not to compress"},
    {"refuse options", module, string, std::nullopt, "client options to refuse"},
    {"exclude", module, string, std::nullopt, "exclude patterns applied by the daemon"},
    {"reverse lookup", module, boolean, "no", "look up client host names even if no pattern needs one"},
    {"forward lookup", module, boolean, "yes", "resolve host names in hosts allow/deny to addresses"},
    {"syncfs state dir", module, path, "/var/lib/syncfsd", "where native replication streams keep their applied position (a <module> subdirectory)"},
    {"include", module, string, std::nullopt, "include patterns applied by the daemon (before exclude)"},
    {"filter", module, string, std::nullopt, "filter rules (\"- PAT\" / \"+ PAT\") applied by the daemon"},
    {"transfer logging", module, boolean, "no", "log one line per transferred file"},
    {"log format", module, string, "%o %h [%a] %m (%u) %f %l", "format of transfer log lines"},
    {"max verbosity", module, integer, "1", "highest client -v level that makes the daemon log more"},
    {"incoming chmod", module, string, std::nullopt, "--chmod rules applied to the modes of received files"},
    {"outgoing chmod", module, string, std::nullopt, "--chmod rules applied to the modes of sent files"},
    {"include from", module, path, std::nullopt, "file of include patterns applied by the daemon, one per line"},
    {"exclude from", module, path, std::nullopt, "file of exclude patterns applied by the daemon, one per line"},
    {"pre-xfer exec", module, string, std::nullopt, "shell command run before a transfer; non-zero refuses it"},
    {"post-xfer exec", module, string, std::nullopt, "shell command run after a transfer (RSYNC_EXIT_STATUS)"},
    {"early exec", module, string, std::nullopt, "shell command run before the module is entered, fed --early-input"},
    {"auth digest", module, string, std::nullopt, "weakest auth digest accepted (sha512 sha256 sha1 md5 md4)"},
    {"name converter", module, string, std::nullopt, "program that maps user/group names and ids (usr/grp/uid/gid lines)"},
}};

std::optional<P> find_param(std::string_view norm_key) {
    for (std::size_t i = 0; i < kParamCount; ++i)
        if (config::normalize_key(kParams[i].name) == norm_key) return static_cast<P>(i);
    if (norm_key == "bindaddress") return P::address;  // rsync's alias
    return std::nullopt;
}

}  // namespace sfs::server
