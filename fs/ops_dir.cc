// Directory listing. A DirHandle owns a DIR stream on SOURCE; readdirplus registers each
// entry with the inode table (one lookup each, which the kernel later forgets), so `ls -l`
// and `find` cost one round trip per buffer instead of one per name.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/syscalls.h"
#include "fs/op_helpers.h"
#include "fs/ops.h"

namespace sfs::fs::ops {
namespace {

struct DirHandle {
    DIR* dp = nullptr;
    off_t offset = 0;
    struct dirent* entry = nullptr;  // read but not yet returned (did not fit)
    ~DirHandle() {
        if (dp) ::closedir(dp);
    }
};

DirHandle* dir_of(fuse_file_info* fi) noexcept { return reinterpret_cast<DirHandle*>(fi->fh); }

bool is_dot(const char* name) noexcept {
    return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
    FsContext& ctx = ctx_of(req);
    Inode& dir = *ctx.table.get(ino);
    DirHandle* d = dir_of(fi);
    std::vector<char> buf(size);
    char* p = buf.data();
    size_t rem = size;
    if (off != d->offset) {
        ::seekdir(d->dp, off);
        d->entry = nullptr;
        d->offset = off;
    }
    int err = 0;
    bool any = false;
    while (true) {
        if (!d->entry) {
            errno = 0;
            d->entry = ::readdir(d->dp);
            if (!d->entry) {
                err = errno;
                break;
            }
        }
        const char* name = d->entry->d_name;
        const off_t next = d->entry->d_off;
        size_t used;
        if (plus) {
            if (is_dot(name)) {
                fuse_entry_param e{};
                e.attr.st_ino = d->entry->d_ino;
                e.attr.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
                used = fuse_add_direntry_plus(req, p, rem, name, &e, next);
                if (used > rem) break;
            } else {
                if (fuse_add_direntry_plus(req, nullptr, 0, name, nullptr, 0) > rem) break;
                auto e = lookup_entry(ctx, dir, ::dirfd(d->dp), name);
                if (!e) {
                    if (e.error() == ENOENT) {  // removed since readdir: skip it
                        d->entry = nullptr;
                        d->offset = next;
                        continue;
                    }
                    err = e.error();
                    break;
                }
                used = fuse_add_direntry_plus(req, p, rem, name, &*e, next);
            }
        } else {
            struct stat st{};
            st.st_ino = d->entry->d_ino;
            st.st_mode = static_cast<mode_t>(d->entry->d_type) << 12;
            used = fuse_add_direntry(req, p, rem, name, &st, next);
            if (used > rem) break;
        }
        any = true;
        p += used;
        rem -= used;
        d->entry = nullptr;
        d->offset = next;
    }
    if (err && !any) return (void)fuse_reply_err(req, err);
    fuse_reply_buf(req, buf.data(), size - rem);
}

}  // namespace

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
    guarded(req, "opendir", [&] {
        FsContext& ctx = ctx_of(req);
        Inode& node = *ctx.table.get(ino);
        auto pfd = ctx.table.path_fd(node);
        if (!pfd) return (void)fuse_reply_err(req, pfd.error());
        if (auto r = ctx.table.begin_open(node); !r) return (void)fuse_reply_err(req, r.error());
        sys::ProcFdPath proc(pfd->get());
        auto fd = sys::openat(AT_FDCWD, proc.c_str(), O_RDONLY | O_DIRECTORY | (ctx.options.noatime ? O_NOATIME : 0));
        if (!fd) {
            ctx.table.end_open(node);
            return (void)fuse_reply_err(req, fd.error());
        }
        auto handle = std::make_unique<DirHandle>();
        handle->dp = ::fdopendir(fd->get());
        if (!handle->dp) {
            ctx.table.end_open(node);
            return (void)fuse_reply_err(req, errno);
        }
        fd->release();  // owned by the DIR stream now
        fi->fh = reinterpret_cast<uint64_t>(handle.get());
        fi->keep_cache = ctx.timeout > 0;
        fi->cache_readdir = ctx.timeout > 0;
        if (fuse_reply_open(req, fi) == 0) {
            handle.release();
        } else {
            ctx.table.end_open(node);
        }
    });
}

void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) noexcept {
    guarded(req, "readdir", [&] { do_readdir(req, ino, size, off, fi, false); });
}

void readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) noexcept {
    guarded(req, "readdirplus", [&] { do_readdir(req, ino, size, off, fi, true); });
}

void releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
    FsContext& ctx = ctx_of(req);
    delete dir_of(fi);
    ctx.table.end_open(*ctx.table.get(ino));
    fuse_reply_err(req, 0);
}

void fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) noexcept {
    int fd = ::dirfd(dir_of(fi)->dp);
    int rc = datasync ? ::fdatasync(fd) : ::fsync(fd);
    fuse_reply_err(req, rc == -1 ? errno : 0);
}

}  // namespace sfs::fs::ops
