#include "protocol/native/xattr_summary.h"

#include <xxhash.h>

#include <cstring>
#include <string>

namespace sfs::protocol::native {

namespace {

// Set by each host on its own (its labelling policy): never a difference worth repairing.
bool host_owned(const std::string& name) { return name == "security.selinux"; }

}  // namespace

XattrSummary summarize_xattrs(const sys::XattrList& xattrs) {
    XattrSummary out;
    XXH3_state_t* state = XXH3_createState();
    XXH3_128bits_reset(state);
    for (const auto& [name, value] : xattrs) {
        if (host_owned(name)) continue;
        if (out.names.size() < kMaxXattrNames) out.names.push_back(name);
        XXH3_128bits_update(state, name.data(), name.size() + 1);  // with its NUL
        const std::uint32_t len = static_cast<std::uint32_t>(value.size());
        XXH3_128bits_update(state, &len, sizeof len);
        XXH3_128bits_update(state, value.data(), value.size());
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(state));
    XXH3_freeState(state);
    std::memcpy(out.digest.data(), c.digest, out.digest.size());
    return out;
}

}  // namespace sfs::protocol::native
