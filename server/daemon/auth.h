// Daemon authentication (rsync authenticate.c auth_server() / check_secret()).
//
// The server sends `@RSYNCD: AUTHREQD <challenge>`; the client answers `<user> <response>`
// where response = base64-without-padding(H(password ‖ challenge)). H is negotiated:
//  - the client's greeting carried a digest list: the first of our preferences
//    (sha512 sha256 sha1 md5 md4, strongest first, as rsync lists them) that the client
//    offers (rsync compat.c negotiate_daemon_auth());
//  - no list: md5 from protocol 30 on, else the "old" MD4 that hashes a 4-byte zero seed
//    before the data (rsync checksum.c sum_init() for CSUM_MD4_OLD).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sfs::server {

enum class AuthDigest { md4_old, md4, md5, sha1, sha256, sha512 };

// Our digest list for the greeting, in preference order (strongest first).
inline constexpr std::string_view kAuthDigestList = "sha512 sha256 sha1 md5 md4";

// `auth digest = NAME` (a module's minimum): the rank of a digest name in kAuthDigestList
// (0 = strongest), -1 when unknown; and the rank of a negotiated digest (md4_old = md4).
int auth_digest_rank(std::string_view name);
int auth_digest_rank(AuthDigest d);
std::string_view auth_digest_name(AuthDigest d);

// Chooses H. `client_list` is the text after the version in the client's greeting (nullopt
// when absent). Fails when the client offers a list without any of ours.
Result<AuthDigest> choose_auth_digest(const std::optional<std::string>& client_list, int protocol);

std::string base64_nopad(std::string_view bytes);

// base64_nopad of 16 bytes from the kernel CSPRNG.
Result<std::string> make_challenge();

std::string auth_response(AuthDigest digest, std::string_view password, std::string_view challenge);

struct AuthRequest {
    std::string module;
    std::string auth_users;     // the module's `auth users`
    std::string secrets_file;
    bool strict_modes = true;
    AuthDigest digest = AuthDigest::md5;
    std::string challenge;
};

struct AuthResult {
    std::string user;                     // as sent by the client (for logs)
    std::optional<bool> read_only;        // from a `user:ro` / `user:rw` rule
};

// Checks the client's `<user> <response>` line. The error says why, for the log only; the
// client just gets "auth failed".
Result<AuthResult> check_auth(const AuthRequest& req, std::string_view response_line);

}  // namespace sfs::server
