#include "fs/change_record.h"

namespace sfs::fs {

const char* to_string(ChangeKind kind) noexcept {
    switch (kind) {
        case ChangeKind::Mkdir: return "mkdir";
        case ChangeKind::Mknod: return "mknod";
        case ChangeKind::Create: return "create";
        case ChangeKind::Symlink: return "symlink";
        case ChangeKind::Link: return "link";
        case ChangeKind::Rename: return "rename";
        case ChangeKind::Unlink: return "unlink";
        case ChangeKind::Rmdir: return "rmdir";
        case ChangeKind::Setattr: return "setattr";
        case ChangeKind::Setxattr: return "setxattr";
        case ChangeKind::Removexattr: return "removexattr";
        case ChangeKind::Write: return "write";
        case ChangeKind::Verify: return "verify";
    }
    return "unknown";
}

}  // namespace sfs::fs
