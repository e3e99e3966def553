// `hosts allow` / `hosts deny`, with rsyncd's semantics (access.c allow_access()):
//  - an allow list is checked first: a match admits the client;
//  - with an allow list and no deny list, anything else is refused;
//  - then a deny-list match refuses; everything else is admitted.
// Patterns are separated by spaces, tabs or commas and compared case-insensitively:
//  - an address (IPv4 or IPv6, IPv4-mapped IPv6 peers compare as IPv4), optionally with
//    /bits (CIDR) or /netmask;
//  - a pattern with `*`, `?` or `[` is a shell wildcard matched against the address and
//    against the host name;
//  - anything else is a host name, compared with the client's reverse-resolved name and,
//    with `forward lookup` on, resolved forwards and compared by address. A deny-list name
//    that cannot be resolved counts as a match (fail closed), as in rsync 3.5.
// The reverse lookup is made only when a pattern needs a name (or `reverse lookup = yes`).
#pragma once

#include <optional>
#include <string>

namespace sfs::server {

struct Peer {
    std::string address;                    // numeric, e.g. "127.0.0.2" or "::1"
    std::optional<std::string> host_name;   // filled lazily by the first name pattern
    bool looked_up = false;
    // The name for messages: the resolved name, or rsyncd's "UNDETERMINED".
    std::string display_name() const { return host_name.value_or("UNDETERMINED"); }
};

// Reverse-resolves peer.address once (sets looked_up / host_name).
void resolve_peer_name(Peer& peer);

// True when `list` contains a pattern matching the peer. `deny` selects fail-closed handling
// of unresolvable names.
bool host_list_matches(const std::string& list, Peer& peer, bool deny, bool forward_lookup);

// The full allow/deny decision; empty strings mean "no list".
bool host_allowed(const std::string& allow, const std::string& deny, Peer& peer, bool forward_lookup);

}  // namespace sfs::server
