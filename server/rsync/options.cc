#include "server/rsync/options.h"

#include <charconv>
#include <string_view>

namespace sfs::server::rsync {

namespace {

Result<std::int64_t> parse_num(std::string_view opt, std::string_view v) {
    std::int64_t n = 0;
    std::size_t mult = 1;
    if (!v.empty() && (v.back() == 'k' || v.back() == 'K')) mult = 1024, v.remove_suffix(1);
    else if (!v.empty() && (v.back() == 'm' || v.back() == 'M')) mult = 1024 * 1024, v.remove_suffix(1);
    else if (!v.empty() && (v.back() == 'g' || v.back() == 'G')) mult = 1024 * 1024 * 1024, v.remove_suffix(1);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size())
        return fail("syncfsd: invalid value in " + std::string(opt) + "=" + std::string(v.substr(0, 256)) +
                    (v.size() > 256 ? "..." : ""));
    return n * static_cast<std::int64_t>(mult);
}

constexpr std::size_t kMaxFilterArgs = 10000;

Result<void> add_filter_arg(ServerOptions& o, std::string_view text, char kind, bool from_file) {
    if (o.filter_args.size() >= kMaxFilterArgs) return fail("more than 10000 filter options");
    if (text.size() > 4096 || text.find('\0') != std::string_view::npos)
        return fail("syncfsd: filter option longer than 4096 bytes");
    o.filter_args.push_back({kind, from_file, std::string(text)});
    return {};
}

// `idx`: the cluster's index in `args`; -f without text in the cluster takes the next one.
Result<void> short_flags(ServerOptions& o, std::string_view s, const std::vector<std::string>& args, std::size_t& idx) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        switch (c) {
        case 'r': o.recurse = true; break;
        case 'd': o.xfer_dirs = true; break;
        case 'l': o.links = true; break;
        case 'L': o.copy_links = true; break;
        case 'k': o.copy_dirlinks = true; break;
        case 'K': o.keep_dirlinks = true; break;
        case 'p': o.perms = true; break;
        case 'E': o.executability = true; break;
        case 't': o.times = true; break;
        case 'U': o.atimes = true; break;
        case 'O': o.omit_dir_times = true; break;
        case 'J': break;  // omit symlink times: we never set them
        case 'o': o.owner = true; break;
        case 'g': o.group = true; break;
        case 'D': o.devices = o.specials = true; break;
        case 'H': o.hard_links = true; break;
        case 'c': o.checksum = true; break;
        case 'n': o.dry_run = true; break;
        case 'z': o.compress = true; break;
        case 'v': ++o.verbose; break;
        case 'q': break;
        case 'W': o.whole_file = true; break;
        case 'I': o.ignore_times = true; break;
        case 'u': o.update_only = true; break;
        case 'b': o.backup = true; break;
        case 'S': o.sparse = true; break;
        case 'x': o.one_file_system = true; break;
        case 'R': o.relative = true; break;
        case 'e': return {};  // -e.<client info>: rest of the cluster (protocol >= 30 info)
        case 'f': {
            // -f RULE (--filter), as `-M-f...` passes it.
            std::string_view rule = s.substr(i + 1);
            if (rule.empty()) {
                if (idx + 1 >= args.size() || args[idx + 1] == ".") return fail("protocol error: -f without a rule");
                rule = args[++idx];
            }
            return add_filter_arg(o, rule, 0, false);
        }
        case 'B': {
            auto n = parse_num("-B", s.substr(i + 1));
            if (!n) return std::unexpected(n.error());
            if (*n <= 0 || *n > (1 << 29)) return fail("invalid block size: " + std::string(s.substr(i + 1)));
            o.block_size = static_cast<std::int32_t>(*n);
            return {};
        }
        default:
            return fail(std::string("syncfsd: option -") + c + " is not supported by this server");
        }
    }
    return {};
}

}  // namespace

const char* alt_dest_name(ServerOptions::AltDest kind) noexcept {
    switch (kind) {
    case ServerOptions::AltDest::link: return "--link-dest";
    case ServerOptions::AltDest::copy: return "--copy-dest";
    case ServerOptions::AltDest::compare: return "--compare-dest";
    case ServerOptions::AltDest::none: break;
    }
    return "--link-dest";
}

Result<ServerOptions> parse_server_args(const std::vector<std::string>& args) {
    ServerOptions o;
    bool saw_server = false, saw_dot = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view a = args[i];
        if (saw_dot) {
            o.paths.emplace_back(a);
            continue;
        }
        if (a == "--server") { saw_server = true; continue; }
        if (a == ".") { saw_dot = true; continue; }
        if (a.size() >= 2 && a[0] == '-' && a[1] != '-') {
            if (auto r = short_flags(o, a.substr(1), args, i); !r) return std::unexpected(r.error());
            continue;
        }
        std::string_view name = a, value;
        bool has_value = false;
        if (auto eq = a.find('='); eq != std::string_view::npos) {
            name = a.substr(0, eq);
            value = a.substr(eq + 1);
            has_value = true;
        }
        if (name == "--sender") o.sender = true;
        else if (name == "--delete" || name == "--del" || name == "--delete-before" || name == "--delete-during" ||
                 name == "--delete-after" || name == "--delete-delay") o.delete_mode = true;
        else if (name == "--delete-excluded") o.delete_mode = o.delete_excluded = true;
        else if (name == "--force") o.force = true;
        else if (name == "--filter" || name == "--exclude" || name == "--include" || name == "--exclude-from" ||
                 name == "--include-from") {
            // The client's own rules as options (what -M/--remote-option passes; the usual
            // client sends its rules on the wire instead). Parsed once the module root is
            // open (filter.h add_arg); merge files are read beneath the module.
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: " + std::string(name) + " without a value");
                value = args[++i];
            }
            const bool from_file = name.ends_with("-from");
            const char kind = name == "--filter" ? 0 : name.starts_with("--include") ? '+' : '-';
            if (from_file && value.empty()) return fail("invalid " + std::string(name));
            if (auto r = add_filter_arg(o, value, kind, from_file); !r) return std::unexpected(r.error());
        }
        else if (name == "--backup") o.backup = true;
        else if (name == "--backup-dir") {
            // Sent as two arguments ("--backup-dir", DIR) so a shell could expand ~; the
            // "=" form is accepted as well.
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: --backup-dir without a directory");
                value = args[++i];
            }
            if (value.empty() || value.size() > 4096) return fail("invalid --backup-dir");
            o.backup = true;
            o.backup_dir = std::string(value);
        } else if (name == "--link-dest" || name == "--copy-dest" || name == "--compare-dest") {
            // Sent as two arguments (options.c server_options), like --backup-dir.
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: " + std::string(name) + " without a directory");
                value = args[++i];
            }
            using K = ServerOptions::AltDest;
            K kind = name == "--link-dest" ? K::link : name == "--copy-dest" ? K::copy : K::compare;
            if (o.alt_dest != K::none && o.alt_dest != kind)
                return fail("ERROR: the " + std::string(alt_dest_name(kind)) + " option conflicts with the " +
                            alt_dest_name(o.alt_dest) + " option");
            if (o.basis_dirs.size() >= kMaxBasisDirs)
                return fail("ERROR: at most " + std::to_string(kMaxBasisDirs) + " " + alt_dest_name(kind) +
                            " args may be specified");
            if (value.empty() || value.size() > 4096 || value.find('\0') != std::string_view::npos)
                return fail("invalid " + std::string(name) + " directory");
            o.alt_dest = kind;
            o.basis_dirs.emplace_back(value);
        } else if (name == "--partial-dir" || name == "--temp-dir") {
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: " + std::string(name) + " without a directory");
                value = args[++i];
            }
            if (value.size() > 4096 || value.find('\0') != std::string_view::npos)
                return fail("invalid " + std::string(name) + " directory");
            (name == "--partial-dir" ? o.partial_dir : o.temp_dir) = std::string(value);
        } else if (name == "--remove-source-files") {
            o.remove_source = 1;
        } else if (name == "--remove-sent-files") {
            o.remove_source = 2;
        } else if (name == "--usermap" || name == "--groupmap") {
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: " + std::string(name) + " without a map");
                value = args[++i];
            }
            if (value.empty() || value.size() > 65536) return fail("invalid " + std::string(name));
            std::string& m = name == "--usermap" ? o.usermap : o.groupmap;
            if (!m.empty()) return fail("You can only specify " + std::string(name) + " once.");
            m = std::string(value);
        } else if (name == "--relative") {
            o.relative = true;
        } else if (name == "--no-relative" || name == "--no-R") {
            o.relative = false;
            o.no_relative = true;
        } else if (name == "--no-implied-dirs") {
            o.implied_dirs = false;
        } else if (name == "--ignore-missing-args") {
            o.missing_args = 1;
        } else if (name == "--delete-missing-args") {
            o.missing_args = 2;
        } else if (name == "--from0") {
            o.from0 = true;
        } else if (name == "--files-from") {
            if (!has_value) {
                if (i + 1 >= args.size() || args[i + 1] == ".")
                    return fail("protocol error: --files-from without a file");
                value = args[++i];
            }
            if (value.empty() || value.size() > 4096 || value.find('\0') != std::string_view::npos)
                return fail("invalid --files-from file");
            if (value == "-") o.files_from_input = true;
            else o.files_from = std::string(value);
        } else if (name == "--delay-updates") {
            o.delay_updates = true;
        } else if (name == "--no-delay-updates") {
            o.delay_updates = false;
        } else if (name == "--suffix") {
            if (value.find('/') != std::string_view::npos || value.size() > 255)
                return fail("--suffix cannot contain slashes: " + std::string(value));
            o.suffix = std::string(value);
            o.suffix_set = true;
        }
        else if (name == "--new-compress") o.compress = o.new_compress = true;
        else if (name == "--ignore-errors") o.ignore_errors = true;
        else if (name == "--numeric-ids") o.numeric_ids = true;
        else if (name == "--inplace") o.inplace = true;
        else if (name == "--partial") o.partial = true;
        else if (name == "--size-only") o.size_only = true;
        else if (name == "--existing") o.existing = true;
        else if (name == "--ignore-existing") o.ignore_existing = true;
        else if (name == "--no-specials") o.specials = false;
        else if (name == "--specials") o.specials = true;
        else if (name == "--no-W" || name == "--no-whole-file") o.whole_file = false;
        else if (name == "--log-format" || name == "--out-format") {
            if (value.size() > 4096) return fail("invalid " + std::string(name));
            o.log_format = std::string(value);
        }
        else if (name == "--stats" ||
                 name == "--no-msgs2stderr" || name == "--msgs2stderr" || name == "--timeout" ||
                 name == "--bwlimit" || name == "--use-qsort" || name == "--no-r" ||
                 name == "--safe-links" || name == "--fsync" ||
                 name == "--open-noatime" || name == "--preallocate" || name == "--old-compress") {
            // accepted; no server-side effect (the client prints stats, formats its own log)
        } else if (name == "--compress-level") {
            auto n = parse_num(name, value);
            if (!n) return std::unexpected(n.error());
            o.compress_level = static_cast<int>(*n);
            if (o.compress_level == 0) o.compress = false;
            if (o.compress_level < 1) o.compress_level = 1;
            if (o.compress_level > 9) o.compress_level = 9;
        } else if (name == "--max-delete") {
            auto n = parse_num(name, value);
            if (!n) return std::unexpected(n.error());
            o.max_delete = static_cast<int>(*n);
        } else if (name == "--max-size" || name == "--min-size") {
            auto n = parse_num(name, value);
            if (!n) return std::unexpected(n.error());
            (name == "--max-size" ? o.max_size : o.min_size) = *n;
        } else if (name == "--checksum-seed") {
            auto n = parse_num(name, value);
            if (!n) return std::unexpected(n.error());
            o.checksum_seed = static_cast<std::int32_t>(*n);
        } else {
            (void)has_value;
            return fail("syncfsd: option " + std::string(name) + " is not supported by this server");
        }
    }
    if ((o.files_from_input || !o.files_from.empty()) && !o.no_relative) o.relative = true;
    // options.c: --delay-updates without a dir uses ".~tmp~"; "." or "" means no partial dir.
    if (o.delay_updates && o.partial_dir.empty()) o.partial_dir = ".~tmp~";
    {
        std::string_view pd = o.partial_dir;
        while (pd.size() > 1 && pd.back() == '/') pd.remove_suffix(1);
        if (pd == "." || pd == "./") o.partial_dir.clear();
        else o.partial_dir = std::string(pd);
    }
    if (!o.partial_dir.empty()) {
        if (o.inplace)
            return fail(std::string("--inplace cannot be used with --") + (o.delay_updates ? "delay-updates" : "partial-dir"));
        o.partial = true;
    }
    if (!o.suffix_set) o.suffix = o.backup_dir.empty() ? "~" : "";
    if (o.backup && o.backup_dir.empty() && o.suffix.empty())
        return fail("--suffix cannot be empty without a --backup-dir");
    if (!saw_server) return fail("protocol error: argument list lacks --server");
    if (!saw_dot) return fail("protocol error: argument list lacks the \".\" placeholder");
    return o;
}

}  // namespace sfs::server::rsync
