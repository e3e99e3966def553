// State shared by the roles of one rsync session: negotiated protocol, options, the module
// root, the two streams, and message helpers. Passed explicitly; no globals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/rsync_flist.h"
#include "protocol/rsync_wire.h"
#include "server/rsync/beneath.h"
#include "server/rsync/chmod_spec.h"
#include "server/rsync/filter.h"
#include "server/rsync/options.h"
#include "server/rsync/session.h"

namespace sfs::server::rsync {

struct Context {
    int protocol = 27;
    std::int32_t seed = 0;
    ServerOptions opt;
    const ModuleAccess* module = nullptr;
    ModuleRoot root;
    int in_fd = -1;
    protocol::WireReader* in = nullptr;   // what the roles read (raw_in, or mux over it)
    protocol::FdReader* raw_in = nullptr;
    // Set when the client multiplexes its stream (a pull with --remove-source-files): the
    // sender hooks its MSG_SUCCESS handler here.
    protocol::MuxReader* mux = nullptr;
    protocol::MuxWriter* out = nullptr;
    protocol::FlistOptions flist;
    FilterList filters;          // the client's exclude list (transfer-root relative)
    FilterList daemon_filters;   // the module's filter/include/exclude (module relative)
    std::optional<ChmodSpec> incoming_chmod, outgoing_chmod;
    std::string peer;
    SessionStats stats;

    // Name <-> id mapping of this module.
    IdNameLookup& ids() const { return module && module->id_names ? *module->id_names : system_id_lookup(); }

    // Messages the client prints. Below protocol 30 rsync only knows FERROR_XFER/FINFO
    // on the wire, so warnings travel as info.
    void info(const std::string& text);
    void error(const std::string& text);

    // True when the module's own rules exclude `module_path` (relative to the module root).
    bool daemon_excluded(const std::string& module_path, bool is_dir) const {
        return !daemon_filters.empty() && module_path != "." && !module_path.empty() &&
               daemon_filters.excluded(module_path, is_dir);
    }
    // The same for a path the server picks itself (a --backup-dir target): every parent
    // directory and the name are checked (rsync flist.c path_is_daemon_excluded()).
    bool daemon_path_excluded(const std::string& module_path) const {
        if (daemon_filters.empty()) return false;
        for (std::size_t s = module_path.find('/'); s != std::string::npos; s = module_path.find('/', s + 1))
            if (daemon_excluded(module_path.substr(0, s), true)) return true;
        return daemon_excluded(module_path, false);
    }
};

// Strips the "module/" prefix the client puts on each path (util1.c glob_expand_module)
// and sanitizes the rest like sanitize_path: no leading '/', ".." components dropped.
// Keeps a trailing '/' (it means "the contents of"). Returns "" for the module root.
std::string module_relative_arg(const std::string& module_name, const std::string& arg);

// Joins module-relative paths ("." is the root).
std::string join_path(const std::string& dir, const std::string& name);

// The roles. Each returns an error after trying to tell the client.
Result<void> run_sender(Context& ctx);
Result<void> run_receiver(Context& ctx);

}  // namespace sfs::server::rsync
