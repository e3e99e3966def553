// librsync signature of a mirror file (SignatureRequest), streamed out in chunks.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "common/result.h"
#include "protocol/native/messages.h"

namespace sfs::server::native {

struct BasisInfo {
    std::uint64_t size = 0;
    protocol::native::Timestamp mtime;
};

// Reads the regular file at req.path (beneath root, final symlink not followed) and hands the
// signature to `emit` in pieces of at most kMaxChunk bytes. Parameters 0 = rs_sig_args'
// recommendation for the file size. Errors name the path; an error returned by emit is
// passed through unchanged.
Result<BasisInfo> make_signature(int root, const protocol::native::SignatureRequest& req,
                                 const std::function<Result<void>(std::span<const std::uint8_t>)>& emit);

}  // namespace sfs::server::native
