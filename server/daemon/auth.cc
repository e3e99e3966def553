#include "server/daemon/auth.h"
#include "server/daemon/trusted_path.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <algorithm>
#include <cctype>

#include <md4.h>
#include <md5.h>
#include <sha1.h>
#include <sha2.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/unique_fd.h"

namespace sfs::server {
namespace {

// Splits on spaces, tabs and commas; a value starting with a comma splits on commas
// alone, trimming each entry (rsync util1.c conf_strtok()), so an entry such as
// "@group with space:deny" stays one rule.
std::vector<std::string> tokens(std::string_view s) {
    std::vector<std::string> out;
    std::size_t lead = s.find_first_not_of(" \t");
    if (lead != std::string_view::npos && s[lead] == ',') {
        std::size_t pos = lead + 1;
        while (pos <= s.size()) {
            std::size_t end = s.find(',', pos);
            if (end == std::string_view::npos) end = s.size();
            std::string_view t = s.substr(pos, end - pos);
            while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
            while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
            if (!t.empty()) out.emplace_back(t);
            pos = end + 1;
        }
        return out;
    }
    std::size_t pos = 0;
    while (pos < s.size()) {
        std::size_t start = s.find_first_not_of(" ,\t", pos);
        if (start == std::string_view::npos) break;
        std::size_t end = s.find_first_of(" ,\t", start);
        out.emplace_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        pos = end == std::string_view::npos ? s.size() : end;
    }
    return out;
}

// Names of the groups of system user `user` (empty if no such user).
std::vector<std::string> groups_of(const std::string& user) {
    std::vector<std::string> out;
    passwd pw{};
    passwd* res = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res) return out;
    int n = 64;
    std::vector<gid_t> gids(static_cast<std::size_t>(n));
    if (::getgrouplist(user.c_str(), pw.pw_gid, gids.data(), &n) < 0) {
        gids.resize(static_cast<std::size_t>(n));
        if (::getgrouplist(user.c_str(), pw.pw_gid, gids.data(), &n) < 0) return out;
    }
    gids.resize(static_cast<std::size_t>(n));
    for (gid_t g : gids) {
        group gr{};
        group* gres = nullptr;
        std::vector<char> gbuf(16384);
        if (::getgrgid_r(g, &gr, gbuf.data(), gbuf.size(), &gres) == 0 && gres) out.emplace_back(gr.gr_name);
    }
    return out;
}

Result<std::string> read_secrets(const AuthRequest& req) {
    if (req.secrets_file.empty()) return fail("no secrets file");
    if (std::string bad = untrusted_symlink(req.secrets_file); !bad.empty())
        return fail(req.secrets_file + ": refusing " + bad + ", a symlink owned by another user");
    UniqueFd fd(::open(req.secrets_file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(req.secrets_file + ": cannot open secrets file: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail(req.secrets_file + ": fstat: " + std::strerror(errno));
    if (req.strict_modes) {
        if (st.st_mode & 06)
            return fail(req.secrets_file + ": secrets file must not be other-accessible (see strict modes option)");
        if (::geteuid() == 0 && st.st_uid != 0)
            return fail(req.secrets_file + ": secrets file must be owned by root when running as root (see strict modes)");
    }
    if (st.st_size > (1 << 20)) return fail(req.secrets_file + ": secrets file larger than 1 MiB");
    std::string text;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(req.secrets_file + ": read: " + std::strerror(errno));
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > (1 << 20)) return fail(req.secrets_file + ": secrets file larger than 1 MiB");
    }
    return text;
}

// Constant-time comparison of two response strings.
bool same(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char d = 0;
    for (std::size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ b[i]);
    return d == 0;
}

}  // namespace

Result<AuthDigest> choose_auth_digest(const std::optional<std::string>& client_list, int protocol) {
    if (!client_list) return protocol >= 30 ? AuthDigest::md5 : AuthDigest::md4_old;
    auto names = tokens(*client_list);
    for (AuthDigest d : {AuthDigest::sha512, AuthDigest::sha256, AuthDigest::sha1, AuthDigest::md5, AuthDigest::md4})
        for (const auto& n : names)
            if (n == auth_digest_name(d)) return d;
    return fail("your client does not support one of our daemon-auth checksums: " + std::string(kAuthDigestList));
}

std::string_view auth_digest_name(AuthDigest d) {
    switch (d) {
    case AuthDigest::sha512: return "sha512";
    case AuthDigest::sha256: return "sha256";
    case AuthDigest::sha1: return "sha1";
    case AuthDigest::md5: return "md5";
    case AuthDigest::md4:
    case AuthDigest::md4_old: return "md4";
    }
    return "md4";
}

int auth_digest_rank(std::string_view name) {
    int rank = 0;
    for (const auto& n : tokens(kAuthDigestList)) {
        if (n.size() == name.size() &&
            std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
            }))
            return rank;
        ++rank;
    }
    return -1;
}

int auth_digest_rank(AuthDigest d) { return auth_digest_rank(auth_digest_name(d)); }

std::string base64_nopad(std::string_view bytes) {
    static constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t len = bytes.size();
    const std::size_t chars = (len * 8 + 5) / 6;
    for (std::size_t i = 0; i < chars; ++i) {
        std::size_t byte = (i * 6) / 8, bit = (i * 6) % 8;
        unsigned idx;
        if (bit < 3) {
            idx = (d[byte] >> (2 - bit)) & 0x3f;
        } else {
            idx = (d[byte] << (bit - 2)) & 0x3f;
            if (byte + 1 < len) idx |= d[byte + 1] >> (8 - (bit - 2));
        }
        out.push_back(b64[idx]);
    }
    return out;
}

Result<std::string> make_challenge() {
    unsigned char rnd[16];
    std::size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = ::getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(std::string("getrandom: ") + std::strerror(errno), errno);
        got += static_cast<std::size_t>(n);
    }
    return base64_nopad(std::string_view(reinterpret_cast<const char*>(rnd), sizeof rnd));
}

std::string auth_response(AuthDigest digest, std::string_view password, std::string_view challenge) {
    auto pw = reinterpret_cast<const unsigned char*>(password.data());
    auto ch = reinterpret_cast<const unsigned char*>(challenge.data());
    if (digest == AuthDigest::sha256 || digest == AuthDigest::sha512) {
        unsigned char out[SHA512_DIGEST_LENGTH];
        SHA2_CTX c;
        const bool big = digest == AuthDigest::sha512;
        if (big) SHA512Init(&c); else SHA256Init(&c);
        if (big) SHA512Update(&c, pw, password.size()); else SHA256Update(&c, pw, password.size());
        if (big) SHA512Update(&c, ch, challenge.size()); else SHA256Update(&c, ch, challenge.size());
        if (big) SHA512Final(out, &c); else SHA256Final(out, &c);
        return base64_nopad(std::string_view(reinterpret_cast<const char*>(out),
                                             big ? SHA512_DIGEST_LENGTH : SHA256_DIGEST_LENGTH));
    }
    if (digest == AuthDigest::sha1) {
        unsigned char out[SHA1_DIGEST_LENGTH];
        SHA1_CTX c;
        SHA1Init(&c);
        SHA1Update(&c, pw, password.size());
        SHA1Update(&c, ch, challenge.size());
        SHA1Final(out, &c);
        return base64_nopad(std::string_view(reinterpret_cast<const char*>(out), sizeof out));
    }
    unsigned char out[16];
    if (digest == AuthDigest::md5) {
        MD5_CTX c;
        MD5Init(&c);
        MD5Update(&c, reinterpret_cast<const unsigned char*>(password.data()), password.size());
        MD5Update(&c, reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size());
        MD5Final(out, &c);
    } else {
        MD4_CTX c;
        MD4Init(&c);
        if (digest == AuthDigest::md4_old) {
            static constexpr unsigned char seed[4] = {0, 0, 0, 0};
            MD4Update(&c, seed, 4);
        }
        MD4Update(&c, reinterpret_cast<const unsigned char*>(password.data()), password.size());
        MD4Update(&c, reinterpret_cast<const unsigned char*>(challenge.data()), challenge.size());
        MD4Final(out, &c);
    }
    return base64_nopad(std::string_view(reinterpret_cast<const char*>(out), sizeof out));
}

Result<AuthResult> check_auth(const AuthRequest& req, std::string_view line) {
    auto sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0) return fail("invalid challenge response");
    AuthResult result;
    result.user = std::string(line.substr(0, sp));
    std::string_view response = line.substr(sp + 1);
    if (result.user.front() == '#') return fail("invalid username");

    // Find the first `auth users` rule naming this user (or one of its groups).
    std::optional<std::string> matched_group;
    bool matched = false;
    char opt = 0;
    std::optional<std::vector<std::string>> groups;
    for (auto& tok : tokens(req.auth_users)) {
        std::string name = tok;
        opt = 0;
        if (auto colon = tok.find(':'); colon != std::string::npos) {
            name = tok.substr(0, colon);
            std::string o = tok.substr(colon + 1);
            for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (o == "deny") opt = 'd';
            else if (o == "ro") opt = 'r';
            else if (o == "rw") opt = 'w';
        }
        if (name.empty()) continue;
        if (name.front() != '@') {
            if (::fnmatch(name.c_str(), result.user.c_str(), 0) == 0) {
                matched = true;
                break;
            }
            continue;
        }
        if (!groups) groups = groups_of(result.user);
        for (const auto& g : *groups)
            if (::fnmatch(name.c_str() + 1, g.c_str(), 0) == 0) {
                matched_group = g;
                break;
            }
        if (matched_group) {
            matched = true;
            break;
        }
    }
    if (!matched) return fail("no matching rule for user '" + result.user + "'");
    if (opt == 'd') return fail("user '" + result.user + "' denied by rule");

    auto secrets = read_secrets(req);
    if (!secrets) return std::unexpected(secrets.error());

    // First line for the user (or @group) decides; a mismatch there is final, as in rsync.
    bool user_done = false, group_done = !matched_group;
    std::string_view text = *secrets;
    std::string err = "secret not found for user '" + result.user + "'";
    bool ok = false;
    while (!text.empty() && !(user_done && group_done) && !ok) {
        std::size_t nl = text.find('\n');
        std::string_view l = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        bool is_group = !l.empty() && l.front() == '@';
        if (is_group) l.remove_prefix(1);
        const std::string* want = is_group ? (group_done ? nullptr : &*matched_group)
                                           : (user_done ? nullptr : &result.user);
        if (!want || l.size() <= want->size() || l.substr(0, want->size()) != *want || l[want->size()] != ':')
            continue;
        std::string expect = auth_response(req.digest, l.substr(want->size() + 1), req.challenge);
        if (same(expect, response)) {
            ok = true;
        } else {
            err = "password mismatch for user '" + result.user + "'";
            (is_group ? group_done : user_done) = true;
        }
    }
    if (!ok) return fail(err);
    if (opt == 'r') result.read_only = true;
    if (opt == 'w') result.read_only = false;
    return result;
}

}  // namespace sfs::server
