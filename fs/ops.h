// The FUSE low-level handlers, grouped by kind:
//   ops_namespace.cc  lookup, forget, mknod, mkdir, symlink, link, unlink, rmdir, rename
//   ops_attr.cc       getattr, setattr, readlink, statfs, access
//   ops_file.cc       open, create, read, write_buf, release, fsync, fallocate,
//                     copy_file_range, lseek
//   ops_dir.cc        opendir, readdir, readdirplus, releasedir, fsyncdir
//   ops_xattr.cc      setxattr, getxattr, listxattr, removexattr
//   ops.cc            init and the op table (nothing else)
// Every handler is noexcept and replies exactly once.
#pragma once

#include <fuse_lowlevel.h>

namespace sfs::fs {

// The largest READ/WRITE request: 252 pages, so that a reply with its header fits a 1 MiB
// pipe (see init in ops.cc).
inline constexpr unsigned kMaxRequestBytes = 252 * 4096;
// Readahead window of the mount: 4 such requests in flight for a sequential reader (the
// kernel keeps the smaller of this and the bdi's read_ahead_kb, which Session raises).
inline constexpr unsigned kReadaheadBytes = 4 * kMaxRequestBytes;

// The op table handed to fuse_session_new (userdata must be an FsContext*).
const fuse_lowlevel_ops& lowlevel_ops() noexcept;

namespace ops {
void lookup(fuse_req_t, fuse_ino_t, const char*) noexcept;
void forget(fuse_req_t, fuse_ino_t, uint64_t) noexcept;
void forget_multi(fuse_req_t, size_t, fuse_forget_data*) noexcept;
void mknod(fuse_req_t, fuse_ino_t, const char*, mode_t, dev_t) noexcept;
void mkdir(fuse_req_t, fuse_ino_t, const char*, mode_t) noexcept;
void symlink(fuse_req_t, const char*, fuse_ino_t, const char*) noexcept;
void link(fuse_req_t, fuse_ino_t, fuse_ino_t, const char*) noexcept;
void unlink(fuse_req_t, fuse_ino_t, const char*) noexcept;
void rmdir(fuse_req_t, fuse_ino_t, const char*) noexcept;
void rename(fuse_req_t, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) noexcept;

void getattr(fuse_req_t, fuse_ino_t, fuse_file_info*) noexcept;
void setattr(fuse_req_t, fuse_ino_t, struct stat*, int, fuse_file_info*) noexcept;
void readlink(fuse_req_t, fuse_ino_t) noexcept;
void statfs(fuse_req_t, fuse_ino_t) noexcept;
void access(fuse_req_t, fuse_ino_t, int) noexcept;

void open(fuse_req_t, fuse_ino_t, fuse_file_info*) noexcept;
void create(fuse_req_t, fuse_ino_t, const char*, mode_t, fuse_file_info*) noexcept;
void read(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*) noexcept;
void write_buf(fuse_req_t, fuse_ino_t, fuse_bufvec*, off_t, fuse_file_info*) noexcept;
void release(fuse_req_t, fuse_ino_t, fuse_file_info*) noexcept;
void fsync(fuse_req_t, fuse_ino_t, int, fuse_file_info*) noexcept;
void fallocate(fuse_req_t, fuse_ino_t, int, off_t, off_t, fuse_file_info*) noexcept;
void copy_file_range(fuse_req_t, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t,
                     fuse_file_info*, size_t, int) noexcept;
void lseek(fuse_req_t, fuse_ino_t, off_t, int, fuse_file_info*) noexcept;

void opendir(fuse_req_t, fuse_ino_t, fuse_file_info*) noexcept;
void readdir(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*) noexcept;
void readdirplus(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*) noexcept;
void releasedir(fuse_req_t, fuse_ino_t, fuse_file_info*) noexcept;
void fsyncdir(fuse_req_t, fuse_ino_t, int, fuse_file_info*) noexcept;

void setxattr(fuse_req_t, fuse_ino_t, const char*, const char*, size_t, int) noexcept;
void getxattr(fuse_req_t, fuse_ino_t, const char*, size_t) noexcept;
void listxattr(fuse_req_t, fuse_ino_t, size_t) noexcept;
void removexattr(fuse_req_t, fuse_ino_t, const char*) noexcept;
}  // namespace ops

}  // namespace sfs::fs
