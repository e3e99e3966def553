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
    // The client escapes option values with backslashes for a shell (options.c safe_arg:
    // "--usermap=\\*:1"), and no shell removes them on the way to a daemon, so the daemon
    // does (io.c read_args unbackslash_arg); the paths after "." are the transfer's.
    for (auto& a : args) {
        if (a == ".") break;
        std::string u;
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (a[i] == '\\' && i + 1 < a.size()) ++i;
            u.push_back(a[i]);
        }
        a = std::move(u);
    }
    return args;
}

namespace {

// Index of the short-option cluster containing 's' before any '.'/'e', or npos.
std::size_t protect_cluster(const std::vector<std::string>& args, std::size_t& letter) {
    for (std::size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == ".") break;
        if (a.size() < 2 || a[0] != '-' || a[1] == '-') continue;
        for (std::size_t j = 1; j < a.size() && a[j] != '.' && a[j] != 'e'; ++j)
            if (a[j] == 's') {
                letter = j;
                return i;
            }
    }
    return std::string::npos;
}

}  // namespace

Result<std::vector<std::string>> read_protected_args(LineChannel& ch, std::vector<std::string> first) {
    std::size_t letter = 0;
    std::size_t cluster = protect_cluster(first, letter);
    bool long_form = false;
    for (auto it = first.begin(); it != first.end(); ++it)
        if (*it == "--secluded-args" || *it == "--protect-args") {
            first.erase(it);
            long_form = true;
            break;
        }
    if (cluster == std::string::npos && !long_form) return first;
    if (cluster != std::string::npos) {
        // The unprotected part is "--server [--sender] -s<letters> [--iconv=X]". Below
        // protocol 30 the rsync client still prints its remaining args into the first list
        // (after a "(null)" line for the separator); they come again in the second list,
        // so everything after that prefix is dropped.
        std::size_t keep = cluster + 1;
        if (keep < first.size() && first[keep].starts_with("--iconv")) ++keep;
        first.resize(keep);
        first[cluster].erase(letter, 1);
        if (first[cluster] == "-") first.erase(first.begin() + static_cast<std::ptrdiff_t>(cluster));
    }
    std::size_t total = 0;
    for (const auto& a : first) total += a.size();
    bool arg0 = true;
    for (;;) {
        auto a = ch.read_line(kMaxArgLen, '\0');
        if (!a) return fail("reading the protected argument list: " + a.error().message);
        if (a->empty()) break;
        if (arg0) {  // "rsync": the client's new arg0
            arg0 = false;
            continue;
        }
        total += a->size();
        if (first.size() >= kMaxArgs || total > kMaxArgBytes) return fail("argument list too long");
        first.push_back(std::move(*a));
    }
    return first;
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
    {'a', "archive"}, {'b', "backup"}, {'c', "checksum"}, {'d', "dirs"}, {'e', "rsh"}, {'f', "filter"},
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

// One `refuse options` word: "!" un-refuses; the last matching word decides (rsync
// options.c set_refuse_options / parse_one_refuse_match).
struct RefuseRule {
    bool negated = false;
    bool wild = false;
    std::string pattern;
};

// Options rsyncd only refuses by exact name, never through a wildcard like "*".
bool exact_only(std::string_view name, char letter) {
    if (letter == 'e' || letter == '0' || letter == 's' || letter == 'n') return true;
    for (std::string_view n : {"iconv", "no-iconv", "checksum-seed", "copy-devices", "write-devices", "log-format",
                               "sender", "server", "rsh", "dry-run", "secluded-args", "from0"})
        if (name == n) return true;
    return false;
}

bool is_refused(std::string_view name, char letter, const std::vector<RefuseRule>& rules) {
    bool refused = false;
    const std::string long_name(name);
    const std::string short_name = letter ? std::string(1, letter) : std::string();
    for (const auto& r : rules) {
        std::string pat = r.pattern;
        bool wild = r.wild;
        if (pat == "a" || pat == "archive") {  // -a stands for the options it implies
            pat = "[ardlptgoD]";
            wild = true;
        }
        // Spellings of one option (rsync same_refuse_action()): --del is --delete-during.
        std::string alias = name == "del" ? "delete-during" : name == "delete-during" ? "del" : "";
        bool hit = ::fnmatch(pat.c_str(), long_name.c_str(), 0) == 0 ||
                   (!alias.empty() && !wild && pat == alias) ||
                   (!short_name.empty() && ::fnmatch(pat.c_str(), short_name.c_str(), 0) == 0);
        // Refusing "delete" refuses every --delete-WHEN variant too.
        if (!hit && pat == "delete" && (name.starts_with("delete") || name == "del")) hit = true;
        if (!hit || (wild && exact_only(name, letter))) continue;
        refused = !r.negated;
    }
    return refused;
}

}  // namespace

std::string refused_option(const std::vector<std::string>& args, const std::string& refuse_list) {
    std::vector<RefuseRule> rules;
    std::size_t pos = 0;
    while (pos < refuse_list.size()) {
        std::size_t s = refuse_list.find_first_not_of(" \t", pos);
        if (s == std::string::npos) break;
        std::size_t e = refuse_list.find_first_of(" \t", s);
        std::string p = refuse_list.substr(s, e == std::string::npos ? std::string::npos : e - s);
        RefuseRule r;
        if (p.size() > 1 && p.starts_with("!")) {
            r.negated = true;
            p.erase(0, 1);
        }
        if (p.starts_with("-")) p.erase(0, p.find_first_not_of('-') == std::string::npos ? p.size() : p.find_first_not_of('-'));
        r.wild = p.find_first_of("*?[") != std::string::npos;
        r.pattern = std::move(p);
        if (!r.pattern.empty()) rules.push_back(std::move(r));
        pos = e == std::string::npos ? refuse_list.size() : e;
    }
    if (rules.empty()) return {};
    for (std::size_t i = 1; i < args.size(); ++i) {
        std::string_view a = args[i];
        if (a == ".") break;
        if (a.starts_with("--")) {
            std::string_view name = a.substr(2, a.find('=') == std::string_view::npos ? std::string_view::npos : a.find('=') - 2);
            char letter = 0;
            for (const auto& [l, n] : kLetters)
                if (n == name) letter = l;
            if (is_refused(name, letter, rules)) return "--" + std::string(name);
            // A filter option's value may follow as its own argument (-M--filter RULE);
            // a rule like "- *.o" is text, not options.
            if (a.find('=') == std::string_view::npos &&
                (name == "filter" || name == "exclude" || name == "include" || name == "exclude-from" ||
                 name == "include-from"))
                ++i;
        } else if (a.starts_with("-")) {
            // A cluster like -logDtpre.iLsfxC: letters before a '.' are options; the part
            // after '.' is protocol capability flags, not options.
            std::string_view letters = a.substr(1, a.find('.') == std::string_view::npos ? std::string_view::npos : a.find('.') - 1);
            for (std::size_t k = 0; k < letters.size(); ++k) {
                const char c = letters[k];
                if (c == 'e') break;  // -e takes the rest of the cluster as its argument
                for (const auto& [letter, name] : kLetters)
                    if (letter == c && is_refused(name, letter, rules)) return "--" + std::string(name);
                if (c == 'f') {
                    // -f RULE: the rest of the cluster, or the next argument, is the rule.
                    if (k + 1 == a.size() - 1) ++i;
                    break;
                }
            }
        }
    }
    return {};
}

}  // namespace sfs::server
