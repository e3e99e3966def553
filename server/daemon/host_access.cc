#include "server/daemon/host_access.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

namespace sfs::server {
namespace {

struct Addr {
    int family = 0;                   // AF_INET or AF_INET6
    std::array<unsigned char, 16> bytes{};
    int len = 0;
};

// Parses a numeric address; an IPv4-mapped IPv6 address becomes IPv4.
std::optional<Addr> parse_addr(const std::string& s) {
    Addr a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = AF_INET;
        a.len = 4;
        return a;
    }
    std::string t = s;
    if (auto pct = t.find('%'); pct != std::string::npos) t.resize(pct);  // drop a scope id
    if (inet_pton(AF_INET6, t.c_str(), a.bytes.data()) == 1) {
        static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(a.bytes.data(), mapped, 12) == 0) {
            std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
            a.family = AF_INET;
            a.len = 4;
            return a;
        }
        a.family = AF_INET6;
        a.len = 16;
        return a;
    }
    return std::nullopt;
}

bool looks_numeric(const std::string& tok) {
    return tok.find(':') != std::string::npos ||
           tok.find_first_not_of(".0123456789") == std::string::npos;
}

// `tok` is "addr", "addr/bits" or "addr/netmask". nullopt: not an address pattern.
std::optional<bool> match_address(const Addr& peer, const std::string& tok) {
    std::string base = tok, mask;
    if (auto slash = tok.find('/'); slash != std::string::npos) {
        base = tok.substr(0, slash);
        mask = tok.substr(slash + 1);
    }
    if (!looks_numeric(base)) return std::nullopt;
    auto a = parse_addr(base);
    if (!a) return false;
    if (a->family != peer.family) return false;
    std::array<unsigned char, 16> m{};
    if (mask.empty()) {
        std::fill(m.begin(), m.begin() + a->len, 0xff);
    } else if (mask.find_first_not_of("0123456789") == std::string::npos && mask.size() <= 3) {
        int bits = std::stoi(mask);
        if (bits > a->len * 8) return false;
        for (int i = 0; i < a->len; ++i) {
            int b = std::clamp(bits - i * 8, 0, 8);
            m[i] = static_cast<unsigned char>(0xff00 >> b);
        }
    } else {
        auto mk = parse_addr(mask);
        if (!mk || mk->family != a->family) return false;
        m = mk->bytes;
    }
    for (int i = 0; i < a->len; ++i)
        if ((a->bytes[i] & m[i]) != (peer.bytes[i] & m[i])) return false;
    return true;
}

bool wild(const std::string& pattern, const std::string& s) {
    return ::fnmatch(pattern.c_str(), s.c_str(), FNM_CASEFOLD) == 0;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// Forward-resolves `name`; nullopt when it does not resolve.
std::optional<std::vector<Addr>> forward(const std::string& name) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) return std::nullopt;
    std::vector<Addr> out;
    for (auto* r = res; r; r = r->ai_next) {
        char buf[INET6_ADDRSTRLEN];
        const void* src = r->ai_family == AF_INET
                              ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(r->ai_addr)->sin_addr)
                              : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(r->ai_addr)->sin6_addr);
        if (inet_ntop(r->ai_family, src, buf, sizeof buf))
            if (auto a = parse_addr(buf)) out.push_back(*a);
    }
    ::freeaddrinfo(res);
    return out;
}

}  // namespace

void resolve_peer_name(Peer& peer) {
    if (peer.looked_up) return;
    peer.looked_up = true;
    auto a = parse_addr(peer.address);
    if (!a) return;
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (a->family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
        sin->sin_family = AF_INET;
        std::memcpy(&sin->sin_addr, a->bytes.data(), 4);
        len = sizeof *sin;
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
        sin6->sin6_family = AF_INET6;
        std::memcpy(&sin6->sin6_addr, a->bytes.data(), 16);
        len = sizeof *sin6;
    }
    char host[NI_MAXHOST];
    if (::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, nullptr, 0, NI_NAMEREQD) == 0)
        peer.host_name = lower(host);
}

bool host_list_matches(const std::string& list, Peer& peer, bool deny, bool forward_lookup) {
    auto peer_addr = parse_addr(peer.address);
    std::size_t pos = 0;
    const std::string list_l = lower(list);
    while (pos < list_l.size()) {
        std::size_t start = list_l.find_first_not_of(" ,\t", pos);
        if (start == std::string::npos) break;
        std::size_t end = list_l.find_first_of(" ,\t", start);
        std::string tok = list_l.substr(start, end == std::string::npos ? std::string::npos : end - start);
        pos = end == std::string::npos ? list_l.size() : end;

        if (tok.find_first_of("*?[") != std::string::npos) {
            if (wild(tok, peer.address)) return true;
            if (peer_addr && peer_addr->family == AF_INET && tok.find(':') == std::string::npos) {
                // An IPv4-mapped peer address shown as IPv4 also matches IPv4 wildcards.
                char buf[INET_ADDRSTRLEN];
                if (inet_ntop(AF_INET, peer_addr->bytes.data(), buf, sizeof buf) && wild(tok, buf)) return true;
            }
            if (tok.find_first_not_of(".0123456789*?[]!-") != std::string::npos) {
                resolve_peer_name(peer);
                if (peer.host_name && wild(tok, *peer.host_name)) return true;
            }
            continue;
        }
        if (peer_addr) {
            if (auto m = match_address(*peer_addr, tok)) {
                if (*m) return true;
                continue;
            }
        }
        if (tok.find('/') != std::string::npos) continue;  // malformed address pattern
        // A plain host name.
        resolve_peer_name(peer);
        if (peer.host_name && *peer.host_name == tok) return true;
        if (!forward_lookup || !peer_addr) continue;
        auto addrs = forward(tok);
        if (!addrs) {
            if (deny) return true;  // cannot prove the client is not the denied host
            continue;
        }
        for (const auto& a : *addrs)
            if (a.family == peer_addr->family && std::memcmp(a.bytes.data(), peer_addr->bytes.data(), a.len) == 0)
                return true;
    }
    return false;
}

bool host_allowed(const std::string& allow, const std::string& deny, Peer& peer, bool forward_lookup) {
    const bool has_allow = allow.find_first_not_of(" ,\t") != std::string::npos;
    const bool has_deny = deny.find_first_not_of(" ,\t") != std::string::npos;
    if (has_allow) {
        if (host_list_matches(allow, peer, false, forward_lookup)) return true;
        if (!has_deny) return false;
    }
    if (has_deny && host_list_matches(deny, peer, true, forward_lookup)) return false;
    return true;
}

}  // namespace sfs::server
