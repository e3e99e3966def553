// The session's /dev/fuse I/O, routed through syncfs (libfuse 3.14 `fuse_session_custom_io`)
// for what libfuse 3.14 parses away or does not know:
//
// - FUSE_HANDLE_KILLPRIV_V2. libfuse 3.14 has no capability bit for it, so the INIT reply
//   cannot ask for it. With it the kernel sets SB_NOSEC on the mount: after an inode's first
//   write finds nothing to strip (no set-ID bit, no `security.capability`) the kernel
//   remembers that (S_NOSEC) until the inode's attributes are next refreshed, instead of
//   asking GETXATTR(security.capability) before every write(2). In exchange the server
//   clears S_ISUID/S_ISGID itself when the kernel says so (next point; docs/fs.md,
//   "Set-ID bits on write and truncate").
// - The kernel's per-request "clear set-ID bits" flags: FUSE_WRITE_KILL_SUIDGID in WRITE,
//   FUSE_OPEN_KILL_SUIDGID in OPEN and CREATE (the caller lacks CAP_FSETID). libfuse 3.14
//   drops both. The reader below notes them for the request it read; libfuse processes a
//   request on the thread that read it, so the handler asks request_kills_suidgid().
//   FATTR_KILL_SUIDGID in SETATTR needs nothing here: libfuse passes it as
//   FUSE_SET_ATTR_KILL_SUID (the same bit).
//
// - FUSE_TMPFILE (opcode 51, Linux 6.6+: open(dir, O_TMPFILE)). libfuse 3.14 does not know
//   the opcode and answers ENOSYS, after which the kernel fails every O_TMPFILE with
//   EOPNOTSUPP. The request is FUSE_CREATE's (fuse_create_in + a name, here "/") and wants
//   FUSE_CREATE's reply (fuse_entry_out + fuse_open_out), so the reader renumbers it to
//   FUSE_CREATE and libfuse hands it to the create handler. That handler tells it apart by
//   its open flags: the kernel passes the file's f_flags, which hold O_TMPFILE, and a real
//   CREATE never does (the VFS routes O_TMPFILE to ->tmpfile, never to ->atomic_open).
//   docs/fs.md, "O_TMPFILE".
//
// Reads and writes are otherwise the plain syscalls libfuse would make; splice_send is
// provided so that READ replies are still spliced.
#pragma once

#include "common/result.h"

struct fuse_session;

namespace sfs::fs {

// Routes `se`'s device I/O (after fuse_session_mount, before the loop) through the hooks
// above. The session's userdata must be the FsContext.
Result<void> install_request_io(fuse_session* se);

// True when the request the calling FUSE worker is handling carries the kernel's "clear
// S_ISUID/S_ISGID" flag (WRITE or OPEN/CREATE). Meaningful only inside a handler.
bool request_kills_suidgid() noexcept;

}  // namespace sfs::fs
