// What the filesystem tells the rest of syncfs about every change it let through.
//
// fs/ knows nothing of journals or networks: after a mutating op succeeded on SOURCE it
// builds a ChangeRecord and hands it to the ChangeSink given at mount time. The replicator
// implements ChangeSink (journal + transfer); tests implement it to assert exact records.
//
// Contract:
//  - A record is emitted only after the op succeeded on SOURCE, never for a failed op.
//  - Namespace records (everything but Write) are emitted in the order the ops took effect
//    on SOURCE: the fs serialises "do the syscall, emit the record" for namespace ops, so a
//    replay of the records in order on an equal tree reproduces SOURCE.
//  - Paths are relative to SOURCE, without a leading '/'; the root is "".
//  - `ino` is SOURCE's st_ino of the node the op acted on (the moved node for Rename, the
//    removed node for Unlink/Rmdir, the existing node for Link). It is the identity that
//    Write records are coalesced by; `path` on a Write is the node's path when the record
//    was made (best effort: a rename recorded earlier is authoritative).
//  - on_change() is called on FUSE worker threads, concurrently for Write records. It must
//    not block on the network or the disk beyond a short critical section.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>

namespace sfs::fs {

enum class ChangeKind : std::uint8_t {
    Mkdir,        // path, mode, uid, gid
    Mknod,        // path, mode (type bits say fifo/socket/char/block/regular), rdev, uid, gid
    Create,       // regular file created (create, open O_CREAT, O_TMPFILE linked in): path, mode, uid, gid
    Symlink,      // path, target, uid, gid
    Link,         // path = new name, path2 = an existing name of ino
    Rename,       // path = old name, path2 = new name, flags = RENAME_NOREPLACE/EXCHANGE
    Unlink,       // path (ino = the removed node; nlink says whether it still exists elsewhere)
    Rmdir,        // path
    Setattr,      // path, attr_mask says which of mode/uid/gid/size/atime/mtime changed
    Setxattr,     // path, xattr_name, xattr_value
    Removexattr,  // path, xattr_name
    Write,        // path, offset, length: bytes [offset, offset+length) may differ now
                  // (write, write_buf, copy_file_range destination, fallocate, punch hole)
    // Never emitted by fs/: the replicator journals it for a change the outside-mount
    // watcher saw (docs/watcher.md). "The mirror's `path` may differ from SOURCE's current
    // `path`: make it equal" (content as a librsync delta, metadata, or a delete when SOURCE
    // lacks it); flags & kVerifySubtree: the whole subtree below `path` too.
    Verify,
};

// ChangeRecord::flags of a Verify record.
inline constexpr std::uint32_t kVerifySubtree = 1u << 0;
// ChangeRecord::flags bit of a Rename record journaled for a rename the outside-mount
// watcher saw (not one made through the mount): the mirror may lack `path`, so the sender
// checks before renaming and verifies `path2` after it (docs/watcher.md).
inline constexpr std::uint32_t kRenameFromOutside = 1u << 31;

const char* to_string(ChangeKind kind) noexcept;

// Bits of ChangeRecord::attr_mask for Setattr.
enum AttrMask : std::uint32_t {
    kAttrMode = 1u << 0,
    kAttrUid = 1u << 1,
    kAttrGid = 1u << 2,
    kAttrSize = 1u << 3,
    kAttrAtime = 1u << 4,
    kAttrMtime = 1u << 5,
};

struct ChangeRecord {
    ChangeKind kind{};
    std::uint64_t ino = 0;
    std::string path;
    std::string path2;
    std::string target;        // Symlink
    std::uint32_t flags = 0;   // Rename flags
    // Attributes: for Mkdir/Mknod/Create/Symlink the new node's; for Setattr the values
    // after the op, valid where attr_mask says so.
    std::uint32_t attr_mask = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    dev_t rdev = 0;
    std::uint64_t size = 0;
    struct timespec atime{};
    struct timespec mtime{};
    std::uint64_t nlink = 0;   // Unlink: links left after the op
    // Write range.
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    // Xattrs.
    std::string xattr_name;
    std::string xattr_value;
};

class ChangeSink {
public:
    virtual ~ChangeSink() = default;
    virtual void on_change(const ChangeRecord& record) noexcept = 0;
    // fsync/fdatasync on the mount with `-o sync`: block until every mirror acknowledged
    // the data of `ino` as durable. Returns 0 or an errno for the fsync caller.
    virtual int wait_durable(std::uint64_t /*ino*/, const std::string& /*path*/) noexcept { return 0; }
};

}  // namespace sfs::fs
