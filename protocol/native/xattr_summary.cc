#include "protocol/native/xattr_summary.h"

#include <string>

#include "protocol/native/content_hash.h"

namespace sfs::protocol::native {

namespace {

// Set by each host on its own (its labelling policy): never a difference worth repairing.
bool host_owned(const std::string& name) { return name == "security.selinux"; }

}  // namespace

XattrSummary summarize_xattrs(const sys::XattrList& xattrs) {
    XattrSummary out;
    ContentHasher hasher;
    for (const auto& [name, value] : xattrs) {
        if (host_owned(name)) continue;
        if (out.names.size() < kMaxXattrNames) out.names.push_back(name);
        hasher.update(name.data(), name.size() + 1);  // with its NUL
        const std::uint32_t len = static_cast<std::uint32_t>(value.size());
        hasher.update(&len, sizeof len);
        hasher.update(value.data(), value.size());
    }
    out.digest = hasher.digest();
    return out;
}

}  // namespace sfs::protocol::native
