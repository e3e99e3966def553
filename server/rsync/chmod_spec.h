// rsync's --chmod syntax, used by the module parameters `incoming chmod` (applied to the
// modes of a received file list) and `outgoing chmod` (applied to the modes a pull
// sends): comma-separated clauses `[D|F][ugoa]*[+-=][rwxXstugo]*` or an octal `[D|F]NNNN`.
// Semantics follow rsync chmod.c parse_chmod()/tweak_mode(): without [ugoa] the bits are
// masked by the umask; X adds x only to directories and files that already have an x
// bit; D/F limit a clause to directories/non-directories; symlinks are never changed.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace sfs::server::rsync {

class ChmodSpec {
public:
    // nullopt: malformed (the caller names the parameter in its error).
    static std::optional<ChmodSpec> parse(const std::string& text, mode_t umask_bits);
    // The mode (type bits included) after every clause.
    std::uint32_t apply(std::uint32_t mode) const;
    bool empty() const { return clauses_.empty(); }

private:
    struct Clause {
        bool dirs_only = false, files_only = false, x_keep = false;
        int op = 0;                 // '+', '-', '=', or 'S' (octal set)
        std::uint32_t mode_and = 0, mode_or = 0;
        std::uint32_t copy_src = 0, copy_dst = 0, copy_and = 0;
    };
    std::vector<Clause> clauses_;
};

}  // namespace sfs::server::rsync
