// The xattr summary a listing reports for a node (ListEntry::xattrs): both ends compute it
// from the same (name, value) list, so equal summaries mean equal extended attributes.
#pragma once

#include "common/xattrs.h"
#include "protocol/native/messages.h"

namespace sfs::protocol::native {

// Names in order plus XXH3-128 over every (name NUL, u32 length, value) in that order,
// security.selinux left out (each host labels its own files).
// Keeps at most kMaxXattrNames names; the digest still covers all of them.
XattrSummary summarize_xattrs(const sys::XattrList& xattrs);

}  // namespace sfs::protocol::native
