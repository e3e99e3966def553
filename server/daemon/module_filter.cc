#include "server/daemon/module_filter.h"

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

std::string anchored(std::string pat) {
    std::string body = pat;
    while (!body.empty() && body.back() == '/') body.pop_back();
    if (body.find('/') != std::string::npos && pat.front() != '/') pat.insert(0, "/");
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
                                             const std::string& exclude, std::vector<std::string>& warnings) {
    std::vector<std::string> rules;
    add_words(rules, filter, 0, "filter", warnings);
    add_words(rules, include, '+', "include", warnings);
    add_words(rules, exclude, '-', "exclude", warnings);
    return rules;
}

}  // namespace sfs::server
