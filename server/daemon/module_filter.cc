#include "server/daemon/module_filter.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace sfs::server {

namespace {

std::vector<std::string> words(const std::string& s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
        std::size_t j = i;
        while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
        if (j > i) out.push_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

// rsyncd's XFLG_ABS_IF_SLASH | XFLG_DIR2WILD3: a pattern with an inner '/' is anchored at
// the module root, and "dir/" becomes "dir/***" (the directory and everything below it, so
// a push straight to dir/name is refused too; a bare "dir" protects that name only).
std::string anchored(std::string pat) {
    if (pat.empty()) return pat;
    std::string body = pat;
    while (!body.empty() && body.back() == '/') body.pop_back();
    if (body.find('/') != std::string::npos && pat.front() != '/') pat.insert(0, "/");
    if (pat.size() > 1 && pat.back() == '/') pat += "***";
    return pat;
}

// `kind` '-' or '+' for plain words (exclude / include); 0 for `filter` (prefix required).
void add_words(std::vector<std::string>& rules, const std::string& text, char kind, const char* param,
               std::vector<std::string>& warnings) {
    auto w = words(text);
    for (std::size_t i = 0; i < w.size(); ++i) {
        char k = kind;
        std::string pat = w[i];
        if ((pat == "-" || pat == "+") && i + 1 < w.size()) {
            k = pat[0];
            pat = w[++i];
        } else if (pat == "!") {
            rules.emplace_back("!");
            continue;
        }
        if (k == 0) {
            warnings.push_back(std::string(param) + ": rule '" + pat + "' lacks a \"- \" or \"+ \" prefix; ignored");
            continue;
        }
        rules.push_back(std::string(1, k) + " " + anchored(pat));
    }
}

}  // namespace

std::vector<std::string> module_filter_rules(const std::string& filter, const std::string& include,
                                             const std::string& exclude, std::vector<std::string>& warnings,
                                             const std::vector<std::string>& include_from,
                                             const std::vector<std::string>& exclude_from) {
    std::vector<std::string> rules;
    auto add_lines = [&](const std::vector<std::string>& lines, char kind) {
        for (const auto& l : lines) {
            if (l == "!") rules.emplace_back("!");
            else if (l.starts_with("- ") || l.starts_with("+ ")) rules.push_back(l.substr(0, 2) + anchored(l.substr(2)));
            else rules.push_back(std::string(1, kind) + " " + anchored(l));
        }
    };
    add_words(rules, filter, 0, "filter", warnings);
    add_lines(include_from, '+');
    add_words(rules, include, '+', "include", warnings);
    add_lines(exclude_from, '-');
    add_words(rules, exclude, '-', "exclude", warnings);
    return rules;
}

std::optional<std::vector<std::string>> read_filter_file(const std::string& path, std::string& error) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        error = path + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            error = path + ": " + std::strerror(errno);
            return std::nullopt;
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > (1u << 20)) {
            error = path + ": larger than 1 MiB";
            return std::nullopt;
        }
    }
    std::vector<std::string> lines;
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t j = text.find('\n', i);
        if (j == std::string::npos) j = text.size();
        std::string l = text.substr(i, j - i);
        i = j + 1;
        if (!l.empty() && l.back() == '\r') l.pop_back();
        if (l.empty() || l[0] == '#' || l[0] == ';') continue;
        lines.push_back(std::move(l));
    }
    return lines;
}

}  // namespace sfs::server
