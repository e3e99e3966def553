// Helpers shared by the op files: building entries, giving new nodes the caller's owner,
// emitting change records, and the noexcept guard every handler runs in.
#pragma once

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <exception>
#include <string>
#include <utility>

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

// Whether the caller of `req` is in group `gid` (its gid or a supplementary group).
bool caller_in_group(fuse_req_t req, gid_t gid) noexcept;

// The set-ID bits the kernel's ATTR_KILL_SUID/ATTR_KILL_SGID clear on a regular file of
// this mode (setattr_should_drop_sgid()): S_ISUID, and S_ISGID when group-execute is set
// or the caller is neither in the file's group nor has CAP_FSETID. A write or truncate asks
// for this only for a caller without CAP_FSETID (the kernel's kill flags say so); a chown
// for any caller. 0 for anything but a regular file.
mode_t setid_bits_to_clear(fuse_req_t req, const struct stat& st, bool caller_has_fsetid) noexcept;

// Clears those bits of the node `fd` (an open or O_PATH fd of it) on SOURCE. Returns the
// node's stat afterwards and whether its mode changed. The caller holds ns_mu and records
// the change (kAttrMode).
SysResult<std::pair<struct stat, bool>> clear_setid_bits(fuse_req_t req, int fd,
                                                         bool caller_has_fsetid = false) noexcept;

// Fills the attributes part of a change record from a stat.
void set_node_attrs(ChangeRecord& rec, const struct stat& st) noexcept;

// Emits a Setxattr record of `name` = `value` for the node `ino` at `path`. The caller holds
// ns_mu (a namespace-ordered op).
void emit_setxattr(FsContext& ctx, std::uint64_t ino, std::string path, std::string name, std::string value);

// Emits a Write record for `inode` (skipped for unlinked nodes: nothing to replicate).
void emit_write(FsContext& ctx, Inode& inode, std::uint64_t offset, std::uint64_t length) noexcept;

}  // namespace sfs::fs
