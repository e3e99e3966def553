// Reading every extended attribute of one node, for comparisons of SOURCE and a mirror.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace sfs::sys {

// (name, value) pairs sorted by name.
using XattrList = std::vector<std::pair<std::string, std::string>>;

// The extended attributes of `name` in directory `dirfd`, without following a final symlink
// and without opening the node (a FIFO or device is never opened). A filesystem without
// xattr support yields an empty list. Errors: the errno of llistxattr/lgetxattr (ENOENT when
// the node vanished).
SysResult<XattrList> read_xattrs(int dirfd, const std::string& name);

}  // namespace sfs::sys
