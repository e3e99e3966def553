// --usermap / --groupmap (and --chown, which the client turns into "*:USER" / "*:GROUP")
// on a push: rsync uidlist.c parse_name_map() and recv_add_id().
//
// SPEC is "FROM:TO[,FROM:TO...]". FROM is `*` (every id), a number or a range "LO-HI", or a
// name, possibly with wildcards, matched against the sender's name for the id (names exist
// only when ids are mapped by name). TO is a number or a local name. The first matching
// rule wins; an id no rule matches keeps the usual mapping.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "server/rsync/session.h"

namespace sfs::server::rsync {

using sfs::server::IdNameLookup;

struct IdMapRule {
    enum class Kind { any, range, name } kind = Kind::any;
    std::uint32_t lo = 0, hi = 0;
    std::string pattern;
    std::uint32_t to = 0;
};

// `groups`: TO names are group names. Errors name the option and the bad part.
// TO names are looked up through `ids` (the module's name converter, or the system).
Result<std::vector<IdMapRule>> parse_id_map(std::string_view spec, bool groups, IdNameLookup& ids);

// The mapped id of sender id `id` (whose sender-side name is `name`, empty if unknown).
std::optional<std::uint32_t> map_id(const std::vector<IdMapRule>& rules, std::uint32_t id, const std::string& name);

}  // namespace sfs::server::rsync
