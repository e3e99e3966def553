#include "server/daemon/args.h"

#include <fnmatch.h>

#include <string_view>
#include <utility>

namespace sfs::server {

Result<std::vector<std::string>> read_args(LineChannel& ch, int protocol) {
    const char term = protocol >= 30 ? '\0' : '\n';
    std::vector<std::string> args;
    std::size_t total = 0;
    for (;;) {
        auto a = ch.read_line(kMaxArgLen, term);
        if (!a) return fail("reading the argument list: " + a.error().message);
        if (a->empty()) break;
        total += a->size();
        if (args.size() >= kMaxArgs || total > kMaxArgBytes) return fail("argument list too long");
        args.push_back(std::move(*a));
    }
    if (args.empty() || args.front() != "--server") return fail("argument list does not start with --server");
    return args;
}

bool is_pull(const std::vector<std::string>& args) {
    for (const auto& a : args) {
        if (a == "--sender") return true;
        if (a == ".") break;  // end of options
    }
    return false;
}

namespace {

// rsync's single-letter options (options.c long_options[]) by letter.
constexpr std::pair<char, std::string_view> kLetters[] = {
    {'a', "archive"}, {'b', "backup"}, {'c', "checksum"}, {'d', "dirs"}, {'e', "rsh"},
    {'g', "group"}, {'h', "human-readable"}, {'i', "itemize-changes"}, {'k', "copy-dirlinks"},
    {'l', "links"}, {'m', "prune-empty-dirs"}, {'n', "dry-run"}, {'o', "owner"},
    {'p', "perms"}, {'q', "quiet"}, {'r', "recursive"}, {'s', "secluded-args"},
    {'t', "times"}, {'u', "update"}, {'v', "verbose"}, {'x', "one-file-system"},
    {'y', "fuzzy"}, {'z', "compress"}, {'A', "acls"}, {'B', "block-size"}, {'C', "cvs-exclude"},
    {'D', "devices"}, {'E', "executability"}, {'H', "hard-links"}, {'I', "ignore-times"},
    {'J', "omit-link-times"}, {'K', "keep-dirlinks"}, {'L', "copy-links"}, {'O', "omit-dir-times"},
    {'P', "partial"}, {'R', "relative"}, {'S', "sparse"}, {'T', "temp-dir"}, {'U', "atimes"},
    {'W', "whole-file"}, {'X', "xattrs"},
};

bool matches(std::string_view name, const std::string& pattern) {
    return ::fnmatch(pattern.c_str(), std::string(name).c_str(), 0) == 0;
}

}  // namespace

std::string refused_option(const std::vector<std::string>& args, const std::string& refuse_list) {
    std::vector<std::string> patterns;
    std::size_t pos = 0;
    while (pos < refuse_list.size()) {
        std::size_t s = refuse_list.find_first_not_of(" \t", pos);
        if (s == std::string::npos) break;
        std::size_t e = refuse_list.find_first_of(" \t", s);
        std::string p = refuse_list.substr(s, e == std::string::npos ? std::string::npos : e - s);
        if (p.starts_with("!")) p.erase(0, 1);  // rsync's "don't refuse" form: not supported, ignored
        else if (p.starts_with("-")) p.erase(0, p.find_first_not_of('-'));
        else patterns.push_back(p);
        pos = e == std::string::npos ? refuse_list.size() : e;
    }
    if (patterns.empty()) return {};
    for (std::size_t i = 1; i < args.size(); ++i) {
        std::string_view a = args[i];
        if (a == ".") break;
        if (a.starts_with("--")) {
            std::string_view name = a.substr(2, a.find('=') == std::string_view::npos ? std::string_view::npos : a.find('=') - 2);
            if (name == "server" || name == "sender") continue;
            for (const auto& p : patterns)
                if (matches(name, p)) return "--" + std::string(name);
        } else if (a.starts_with("-")) {
            // A cluster like -logDtpre.iLsfxC: letters before a '.' are options; the part
            // after '.' is protocol capability flags, not options.
            std::string_view letters = a.substr(1, a.find('.') == std::string_view::npos ? std::string_view::npos : a.find('.') - 1);
            for (char c : letters) {
                if (c == 'e') break;  // -e takes the rest of the cluster as its argument
                for (const auto& [letter, name] : kLetters)
                    if (letter == c)
                        for (const auto& p : patterns)
                            if (matches(name, p)) return "--" + std::string(name);
            }
        }
    }
    return {};
}

}  // namespace sfs::server
