// Helpers shared by the op files: building entries, giving new nodes the caller's owner,
// emitting change records, and the noexcept guard every handler runs in.
#pragma once

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <string>

#include "common/result.h"
#include "fs/context.h"

namespace sfs::fs {

// Runs `body`; anything thrown becomes EIO with a log line (handlers must not throw into
// libfuse). `body` replies itself on every path that returns normally.
template <class F>
void guarded(fuse_req_t req, const char* op, F&& body) noexcept {
    try {
        body();
    } catch (const std::exception& e) {
        spdlog::error("{}: unexpected error: {}", op, e.what());
        fuse_reply_err(req, EIO);
    } catch (...) {
        spdlog::error("{}: unexpected error", op);
        fuse_reply_err(req, EIO);
    }
}

// Looks `name` up in `parent` on SOURCE and registers it with the table (one lookup).
// Takes ns_mu itself when a namespace op raced with it: never call it with ns_mu held.
SysResult<fuse_entry_param> lookup_entry(FsContext& ctx, Inode& parent, int parent_fd,
                                         const char* name) noexcept;

// Gives a node just created by the (root) daemon the caller's uid, and the caller's gid
// unless the parent directory is set-group-ID (then the inherited group stays), as a
// native create by the caller would. `fd` is an O_PATH or open fd of the new node and `st`
// its stat, updated in place.
SysResult<void> give_to_caller(fuse_req_t req, int parent_fd, int fd, struct stat& st) noexcept;

// Fills the attributes part of a change record from a stat.
void set_node_attrs(ChangeRecord& rec, const struct stat& st) noexcept;

// Emits a Write record for `inode` (skipped for unlinked nodes: nothing to replicate).
void emit_write(FsContext& ctx, Inode& inode, std::uint64_t offset, std::uint64_t length) noexcept;

}  // namespace sfs::fs
