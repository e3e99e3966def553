#include "fs/mount_options.h"

#include <charconv>
#include <cstdlib>
#include <string_view>

namespace sfs::fs {
namespace {

// Mount options the kernel or libfuse understand that we pass through unchanged.
constexpr std::string_view kPassFlags[] = {
    "allow_root", "auto_unmount", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec",
    "atime", "relatime", "strictatime", "nodiratime", "diratime", "async", "dirsync",
    "lazytime", "nolazytime",
};
// Options mount(8)/fstab may hand us that mean nothing to a FUSE mount: accepted, dropped.
constexpr std::string_view kIgnoredFlags[] = {
    "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "owner",
    "group",
};
// key=value options passed through to libfuse.
constexpr std::string_view kPassKeys[] = {"max_read", "blksize", "context", "fscontext",
                                          "defcontext", "rootcontext"};

template <class T>
Result<T> parse_number(std::string_view key, std::string_view value) {
    T out{};
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
    if (value.empty() || ec != std::errc() || ptr != value.data() + value.size()) {
        return fail(std::string(key) + "=" + std::string(value) + ": not a valid number");
    }
    return out;
}

// A byte count with an optional K, M or G suffix (powers of 1024).
Result<std::uint64_t> parse_size(std::string_view key, std::string_view value) {
    std::uint64_t mult = 1;
    std::string_view digits = value;
    if (!digits.empty()) {
        switch (digits.back()) {
        case 'k': case 'K': mult = 1ull << 10; break;
        case 'm': case 'M': mult = 1ull << 20; break;
        case 'g': case 'G': mult = 1ull << 30; break;
        default: break;
        }
        if (mult != 1) digits.remove_suffix(1);
    }
    auto v = parse_number<std::uint64_t>(key, digits);
    if (!v || *v > (std::uint64_t{1} << 50) / mult) {
        return fail(std::string(key) + "=" + std::string(value) + ": not a valid size (a number with K, M or G)");
    }
    return *v * mult;
}

Result<double> parse_seconds(std::string_view key, std::string_view value) {
    std::string s(value);
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || v < 0 || v > 1e7) {
        return fail(std::string(key) + "=" + s + ": not a valid number of seconds");
    }
    return v;
}

bool contains(const auto& list, std::string_view word) {
    for (std::string_view w : list) {
        if (w == word) return true;
    }
    return false;
}

Result<void> apply_option(std::string_view opt, MountOptions& out) {
    if (opt.empty()) return {};
    std::string_view key = opt;
    std::string_view value;
    bool has_value = false;
    if (auto eq = opt.find('='); eq != std::string_view::npos) {
        key = opt.substr(0, eq);
        value = opt.substr(eq + 1);
        has_value = true;
    }
    auto need_value = [&]() -> Result<void> {
        if (!has_value || value.empty()) return fail("option '" + std::string(key) + "' needs a value");
        return {};
    };
    auto no_value = [&]() -> Result<void> {
        if (has_value) return fail("option '" + std::string(key) + "' takes no value");
        return {};
    };

    if (key == "mirror") {
        if (auto r = need_value(); !r) return r;
        std::string_view rest = value;
        while (!rest.empty()) {
            auto semi = rest.find(';');
            std::string_view one = rest.substr(0, semi);
            if (!one.empty()) {
                if (!one.starts_with("rsync://") || one.size() <= 8) {
                    return fail("mirror=" + std::string(one) + ": expected rsync://[user@]host[:port]/module");
                }
                out.mirrors.emplace_back(one);
            }
            if (semi == std::string_view::npos) break;
            rest.remove_prefix(semi + 1);
        }
        return {};
    }
    if (key == "secrets") {
        if (auto r = need_value(); !r) return r;
        out.secrets = value;
        return {};
    }
    if (key == "state") {
        if (auto r = need_value(); !r) return r;
        out.state = value;
        return {};
    }
    if (key == "log") {
        if (auto r = need_value(); !r) return r;
        out.log_file = value;
        return {};
    }
    if (key == "watch") {
        if (auto r = need_value(); !r) return r;
        if (value != "off" && value != "auto" && value != "fanotify" && value != "inotify") {
            return fail("watch=" + std::string(value) + ": expected off, auto, fanotify or inotify");
        }
        out.watch = value;
        return {};
    }
    if (key == "exclude") {
        if (auto r = need_value(); !r) return r;
        out.excludes.emplace_back(value);
        return {};
    }
    if (key == "sync") {
        if (auto r = no_value(); !r) return r;
        out.sync = true;
        return {};
    }
    if (key == "delay") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_number<std::uint32_t>(key, value);
        if (!v) return std::unexpected(v.error());
        out.delay_ms = *v;
        return {};
    }
    if (key == "mirror_timeout") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_number<std::uint32_t>(key, value);
        if (!v) return std::unexpected(v.error());
        if (*v < 1 || *v > 86400) return fail("mirror_timeout=" + std::string(value) + ": must be between 1 and 86400 seconds");
        out.mirror_timeout_s = *v;
        return {};
    }
    if (key == "journal_max") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_size(key, value);
        if (!v) return std::unexpected(v.error());
        if (*v != 0 && *v < (256u << 10)) return fail("journal_max=" + std::string(value) + ": must be 0 (no cap) or at least 256K");
        out.journal_max = *v;
        return {};
    }
    if (key == "max_fds") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_number<std::uint32_t>(key, value);
        if (!v) return std::unexpected(v.error());
        if (*v < 64 || *v > 19000) return fail("max_fds=" + std::string(value) + ": must be between 64 and 19000");
        out.max_fds = *v;
        return {};
    }
    if (key == "threads") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_number<unsigned>(key, value);
        if (!v) return std::unexpected(v.error());
        if (*v < 1 || *v > 256) return fail("threads=" + std::string(value) + ": must be between 1 and 256");
        out.max_threads = *v;
        return {};
    }
    if (key == "timeout") {
        if (auto r = need_value(); !r) return r;
        auto v = parse_seconds(key, value);
        if (!v) return std::unexpected(v.error());
        out.timeout = *v;
        return {};
    }
    if (key == "writeback" || key == "no_writeback") {
        if (auto r = no_value(); !r) return r;
        out.writeback = key == "writeback";
        return {};
    }
    if (key == "fsname" || key == "subtype") {
        return fail("option '" + std::string(key) + "' is set by syncfs itself");
    }
    if (key == "allow_other") {
        if (auto r = no_value(); !r) return r;
        out.allow_other = true;
        out.fuse_options.emplace_back(key);
        return {};
    }
    if (key == "default_permissions") {
        if (auto r = no_value(); !r) return r;
        out.default_permissions = true;
        out.fuse_options.emplace_back(key);
        return {};
    }
    if (key == "ro") {
        if (auto r = no_value(); !r) return r;
        out.read_only = true;
        out.fuse_options.emplace_back(key);
        return {};
    }
    if (key == "noatime") {
        if (auto r = no_value(); !r) return r;
        out.noatime = true;
        out.fuse_options.emplace_back(key);
        return {};
    }
    if (contains(kPassFlags, key)) {
        if (auto r = no_value(); !r) return r;
        if (key == "rw") out.read_only = false;
        if (key == "atime" || key == "relatime" || key == "strictatime") out.noatime = false;
        out.fuse_options.emplace_back(key);
        return {};
    }
    if (contains(kIgnoredFlags, key) || key.starts_with("x-") || key == "comment") return {};
    if (contains(kPassKeys, key)) {
        if (auto r = need_value(); !r) return r;
        out.fuse_options.emplace_back(opt);
        return {};
    }
    return fail("unknown option '" + std::string(opt) + "'");
}

}  // namespace

Result<void> parse_option_list(const std::string& list, MountOptions& out) {
    std::string current;
    for (std::size_t i = 0; i <= list.size(); ++i) {
        if (i == list.size() || list[i] == ',') {
            if (auto r = apply_option(current, out); !r) return r;
            current.clear();
        } else if (list[i] == '\\' && i + 1 < list.size()) {
            current.push_back(list[++i]);
        } else {
            current.push_back(list[i]);
        }
    }
    return {};
}

Result<MountOptions> parse_command_line(int argc, const char* const* argv) {
    MountOptions out;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "-f") {
            out.foreground = true;
        } else if (arg == "-d" || arg == "--debug") {
            out.debug = true;
            out.foreground = true;
        } else if (arg == "-h" || arg == "--help") {
            out.help = true;
            return out;
        } else if (arg == "-V" || arg == "--version") {
            out.version = true;
            return out;
        } else if (arg == "-o") {
            if (i + 1 >= argc) return fail("option '-o' needs an argument");
            if (auto r = parse_option_list(argv[++i], out); !r) return std::unexpected(r.error());
        } else if (arg.starts_with("-o")) {
            if (auto r = parse_option_list(std::string(arg.substr(2)), out); !r) return std::unexpected(r.error());
        } else if (arg == "-s") {
            return fail("option '-s' is not supported: syncfs is always multithreaded");
        } else if (arg.starts_with("-") && arg.size() > 1) {
            return fail("unknown option '" + std::string(arg) + "'");
        } else {
            positional.emplace_back(arg);
        }
    }
    if (positional.size() < 2) {
        return fail(positional.empty() ? "missing SOURCE and MOUNTPOINT" : "missing MOUNTPOINT");
    }
    if (positional.size() > 2) return fail("unexpected argument '" + positional[2] + "'");
    out.source = positional[0];
    out.mountpoint = positional[1];
    if (out.source.empty()) return fail("empty SOURCE");
    if (out.mountpoint.empty()) return fail("empty MOUNTPOINT");
    return out;
}

std::string usage(const char* program) {
    std::string p = program ? program : "syncfs";
    return "usage: " + p + " SOURCE MOUNTPOINT [-f] [-d] [-o OPTIONS]\n"
           "  -f            stay in the foreground\n"
           "  -d            debug output (implies -f)\n"
           "  -o OPTIONS    comma-separated options:\n"
           "     mirror=rsync://[user@]host[:port]/module  (repeatable, or ';'-separated)\n"
           "     secrets=FILE state=DIR sync delay=MS mirror_timeout=S journal_max=SIZE\n"
           "     exclude=PATTERN log=FILE\n"
           "     watch=off|auto|fanotify|inotify (default auto: changes made outside the mount)\n"
           "     max_fds=N (default 4096) timeout=SECONDS (default 30) threads=N no_writeback\n"
           "     allow_other default_permissions ro noatime relatime ... (see syncfs(8))\n";
}

}  // namespace sfs::fs
