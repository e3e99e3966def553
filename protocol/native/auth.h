// The rsync daemon's challenge-response, as the native client answers it (docs/protocol.md §1).
// Mirrors rsync authenticate.c: response = base64 without padding of MD5(password ||
// challenge), where challenge is the base64 text the server sent in `@RSYNCD: AUTHREQD`.
#pragma once

#include <span>
#include <string>
#include <string_view>

namespace sfs::protocol::native {

// Standard alphabet, no '=' padding (rsync's base64_encode(..., pad=0)).
std::string base64_nopad(std::span<const unsigned char> data);

// MD5 variant of rsync's generate_hash() (protocol >= 30 / md5 negotiated).
std::string rsync_auth_response(std::string_view password, std::string_view challenge);

}  // namespace sfs::protocol::native
