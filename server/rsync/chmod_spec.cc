#include "server/rsync/chmod_spec.h"

#include <sys/stat.h>

namespace sfs::server::rsync {

namespace {
constexpr std::uint32_t kBits = 07777;

std::uint32_t special_bits(std::uint32_t where) {
    std::uint32_t b = 0;
    if (where & 0100) b |= S_ISUID;
    if (where & 0010) b |= S_ISGID;
    if (where & 0001) b |= S_ISVTX;
    return b;
}
}  // namespace

std::optional<ChmodSpec> ChmodSpec::parse(const std::string& text, mode_t umask_bits) {
    ChmodSpec spec;
    if (text.size() > 4096) return std::nullopt;
    std::size_t i = 0;
    for (;;) {
        std::size_t end = text.find(',', i);
        if (end == std::string::npos) end = text.size();
        const std::string part = text.substr(i, end - i);
        Clause c;
        std::uint32_t where = 0, what = 0, topbits = 0, topoct = 0, copybits = 0;
        int op = 0;
        bool octal = false;
        for (char ch : part) {
            if (op == 0 && !octal) {
                switch (ch) {
                case 'D': if (c.files_only) return std::nullopt; c.dirs_only = true; break;
                case 'F': if (c.dirs_only) return std::nullopt; c.files_only = true; break;
                case 'u': where |= 0100; topbits |= 04000; break;
                case 'g': where |= 0010; topbits |= 02000; break;
                case 'o': where |= 0001; break;
                case 'a': where |= 0111; topbits |= 06000; break;
                case '+': case '-': case '=': op = ch; break;
                default:
                    if (ch >= '0' && ch <= '7' && !where) {
                        octal = true;
                        op = 'S';
                        where = 1;
                        what = static_cast<std::uint32_t>(ch - '0');
                    } else {
                        return std::nullopt;
                    }
                }
            } else if (octal) {
                if (ch < '0' || ch > '7') return std::nullopt;
                what = what * 8 + static_cast<std::uint32_t>(ch - '0');
                if (what > kBits) return std::nullopt;
            } else {
                const bool perm = ch == 'r' || ch == 'w' || ch == 'x' || ch == 'X' || ch == 's' || ch == 't';
                if (perm && copybits) return std::nullopt;
                switch (ch) {
                case 'r': what |= 4; break;
                case 'w': what |= 2; break;
                case 'X': c.x_keep = true; what |= 1; break;
                case 'x': what |= 1; break;
                case 's': topoct = topbits ? (topoct | topbits) : 04000; break;
                case 't': topoct |= 01000; break;
                case 'u': case 'g': case 'o':
                    if (what || topoct || copybits) return std::nullopt;
                    copybits = ch == 'u' ? 0100 : ch == 'g' ? 0010 : 0001;
                    break;
                default: return std::nullopt;
                }
            }
        }
        if (op == 0) return std::nullopt;
        const bool where_given = where != 0;
        std::uint32_t bits;
        if (where) {
            bits = where * what;
        } else {
            where = 0111;
            bits = (where * what) & ~static_cast<std::uint32_t>(umask_bits);
        }
        c.op = op;
        c.copy_src = copybits;
        c.copy_dst = where;
        c.copy_and = where_given ? kBits : ~static_cast<std::uint32_t>(umask_bits);
        switch (op) {
        case '+': c.mode_and = kBits; c.mode_or = bits + topoct; break;
        case '-': c.mode_and = kBits - bits - topoct; c.mode_or = 0; break;
        case '=':
            c.mode_and = kBits - where * 7 - (topoct ? topbits : 0) - (copybits ? special_bits(where) : 0);
            c.mode_or = bits + topoct;
            break;
        default:  // octal
            c.mode_and = 0;
            c.mode_or = bits;
            c.copy_src = c.copy_dst = 0;
            c.copy_and = kBits;
            break;
        }
        spec.clauses_.push_back(c);
        if (end == text.size()) break;
        i = end + 1;
    }
    return spec;
}

std::uint32_t ChmodSpec::apply(std::uint32_t mode) const {
    const bool is_x = (mode & 0111) != 0;
    const std::uint32_t non_perm = mode & ~kBits;
    const bool is_dir = S_ISDIR(non_perm);
    for (const Clause& c : clauses_) {
        if (c.dirs_only && !is_dir) continue;
        if (c.files_only && is_dir) continue;
        std::uint32_t copy = 0;
        if (c.copy_src & 0100) copy |= (mode >> 6) & 7;
        if (c.copy_src & 0010) copy |= (mode >> 3) & 7;
        if (c.copy_src & 0001) copy |= mode & 7;
        copy = (c.copy_dst * copy) & c.copy_and;
        mode &= c.mode_and;
        if (c.x_keep && !is_x && !is_dir) mode |= c.mode_or & ~0111u;
        else mode |= c.mode_or;
        if (c.op == '-') mode &= kBits - copy;
        else mode |= copy;
    }
    return (mode & kBits) | non_perm;
}

}  // namespace sfs::server::rsync
