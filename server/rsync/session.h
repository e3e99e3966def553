// The rsync transfer that follows the daemon handshake.
//
// server/daemon/ does the text phase (greeting, module choice, access control, auth, the
// argument list) and then calls run_rsync_session() with the connection's two fds. Everything
// binary from here on (checksum seed, exclude list, file list, generator/sender/receiver,
// statistics) lives in server/rsync/ over the wire primitives of protocol/.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace sfs::server {

// How user and group names map to ids on this host (rsync uidlist.c uid_to_user,
// user_to_uid, ...). The default (system_id_lookup()) asks the passwd/group databases; a
// module with `name converter` asks its helper program (server/daemon/name_converter.h).
// nullopt: unknown (the id then stays numeric, as rsync does).
class IdNameLookup {
public:
    virtual ~IdNameLookup() = default;
    virtual std::optional<std::string> user_name(std::uint32_t uid) = 0;
    virtual std::optional<std::string> group_name(std::uint32_t gid) = 0;
    virtual std::optional<std::uint32_t> user_id(const std::string& name) = 0;
    virtual std::optional<std::uint32_t> group_id(const std::string& name) = 0;
    // A failure the client should be told about (once), e.g. "name converter died"; empty
    // when none. Taking it clears it.
    virtual std::string take_failure() { return {}; }
};
IdNameLookup& system_id_lookup();

// What a transfer may do inside one module. Filled from the module's rsyncd.conf section.
struct ModuleAccess {
    std::string name;           // module name, for messages
    std::string path;           // module root on disk (absolute; "/" after chroot)
    // The process's working directory is the module root (the daemon chdir'd there before
    // dropping privileges, as rsyncd): the session opens "." so a module below a parent
    // the module's uid cannot search still works.
    bool root_is_cwd = false;
    bool read_only = true;      // refuse pushes (client --sender absent)
    bool write_only = false;    // refuse pulls
    bool ignore_errors = false; // --delete proceeds despite I/O errors
    bool munge_symlinks = false;
    bool numeric_ids = false;   // no uid/gid name mapping (true under chroot without /etc)
    bool am_root = false;       // may chown / mknod
    // Name <-> id mapping (nullptr: the system's databases). Outlives the session.
    IdNameLookup* id_names = nullptr;
    // The module's `filter`, `include` and `exclude` parameters as filter rules ("- PAT",
    // "+ PAT", in rsync's order), matched against module-relative paths: a pull never
    // lists a matching name, a push refuses to receive one ("daemon refused to receive")
    // and --delete spares it (rsync clientserver.c daemon_filter_list).
    std::vector<std::string> daemon_filter;
    // `transfer logging`: log one line per transferred file with `log_format` (rsyncd's
    // default "%o %h [%a] %m (%u) %f %l" when empty). `peer_host`/`peer_addr`/`user` fill
    // %h %a %u.
    // `incoming chmod` / `outgoing chmod` (rsync --chmod syntax, see chmod_spec.h): applied
    // to the modes of a received file list / of the list a pull sends. Empty: none.
    std::string incoming_chmod, outgoing_chmod;
    bool transfer_logging = false;
    std::string log_format;
    std::string peer_host, peer_addr, user;
};

struct SessionStats {
    std::uint64_t bytes_read = 0;     // from the client
    std::uint64_t bytes_written = 0;  // to the client
    std::uint64_t total_size = 0;     // sum of file sizes in the file list
    std::uint64_t files_transferred = 0;
};

// The highest rsync protocol version the binary phase speaks; the daemon announces
// min(this, its own) in its greeting and passes min(announced, client's) to the session.
int max_protocol_version() noexcept;

// Runs one rsync server session. `protocol` is the negotiated version (min of both
// greetings). `args` is the client's argument list as received (e.g. "--server", "-logDtpre.iLsfxC",
// ".", "web/"). On failure the error has already been sent to the client where possible.
Result<SessionStats> run_rsync_session(int in_fd, int out_fd, int protocol,
                                       const std::vector<std::string>& args,
                                       const ModuleAccess& module);

}  // namespace sfs::server
