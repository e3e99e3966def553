#include "server/rsync/arg_glob.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>

namespace sfs::server::rsync {

bool has_wildcards(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

namespace {

// Names in directory `dir` ("" = module root) matching one pattern component.
std::vector<std::string> match_component(const ModuleRoot& root, const std::string& dir, const std::string& comp,
                                         std::size_t budget) {
    std::vector<std::string> out;
    auto fd = root.open_beneath(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (!fd) return out;
    int dfd = fd->release();
    DIR* d = fdopendir(dfd);
    if (!d) {
        ::close(dfd);
        return out;
    }
    while (dirent* de = readdir(d)) {
        std::string n = de->d_name;
        if (n == "." || n == "..") continue;
        if (fnmatch(comp.c_str(), n.c_str(), FNM_PERIOD) != 0) continue;
        out.push_back(dir.empty() ? n : dir + "/" + n);
        if (out.size() >= budget) break;
    }
    closedir(d);
    return out;
}

}  // namespace

std::vector<std::string> expand_arg_glob(const ModuleRoot& root, const std::string& pattern) {
    if (!has_wildcards(pattern)) return {unbackslash(pattern)};
    std::string body = pattern;
    const bool trailing = !body.empty() && body.back() == '/';
    while (!body.empty() && body.back() == '/') body.pop_back();

    std::vector<std::string> comps;
    for (std::size_t i = 0; i <= body.size();) {
        std::size_t j = body.find('/', i);
        if (j == std::string::npos) j = body.size();
        if (j > i) comps.push_back(body.substr(i, j - i));
        i = j + 1;
    }
    std::vector<std::string> current{""};
    for (std::size_t c = 0; c < comps.size() && !current.empty(); ++c) {
        std::vector<std::string> next;
        const bool last = c + 1 == comps.size();
        for (const auto& dir : current) {
            if (!has_wildcards(comps[c])) {
                std::string p = dir.empty() ? unbackslash(comps[c]) : dir + "/" + unbackslash(comps[c]);
                // Intermediate literal components must exist (as glob(3)); the last one
                // need not be checked here: the sender reports a missing name itself.
                if (last || root.lstat(p)) next.push_back(std::move(p));
                continue;
            }
            auto m = match_component(root, dir, comps[c], kMaxGlobResults - std::min(kMaxGlobResults, next.size()));
            next.insert(next.end(), std::make_move_iterator(m.begin()), std::make_move_iterator(m.end()));
            if (next.size() >= kMaxGlobResults) break;
        }
        current = std::move(next);
    }
    if (current.empty()) return {pattern};
    std::sort(current.begin(), current.end());
    if (trailing)
        for (auto& r : current) r += '/';
    return current;
}

}  // namespace sfs::server::rsync
