#include "protocol/native/auth.h"

#include <md5.h>

namespace sfs::protocol::native {

std::string base64_nopad(std::span<const unsigned char> data) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((data.size() * 4 + 2) / 3);
    std::size_t i = 0;
    for (; i + 3 <= data.size(); i += 3) {
        unsigned v = unsigned{data[i]} << 16 | unsigned{data[i + 1]} << 8 | data[i + 2];
        out += kAlphabet[v >> 18];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    if (data.size() - i == 1) {
        unsigned v = unsigned{data[i]} << 16;
        out += kAlphabet[v >> 18];
        out += kAlphabet[(v >> 12) & 63];
    } else if (data.size() - i == 2) {
        unsigned v = unsigned{data[i]} << 16 | unsigned{data[i + 1]} << 8;
        out += kAlphabet[v >> 18];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
    }
    return out;
}

std::string rsync_auth_response(std::string_view password, std::string_view challenge) {
    MD5_CTX ctx;
    MD5Init(&ctx);
    MD5Update(&ctx, reinterpret_cast<const std::uint8_t*>(password.data()), password.size());
    MD5Update(&ctx, reinterpret_cast<const std::uint8_t*>(challenge.data()), challenge.size());
    unsigned char digest[MD5_DIGEST_LENGTH];
    MD5Final(digest, &ctx);
    return base64_nopad(digest);
}

}  // namespace sfs::protocol::native
