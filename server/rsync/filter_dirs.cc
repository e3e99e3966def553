#include "server/rsync/filter_dirs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "server/rsync/context.h"

namespace sfs::server::rsync {

namespace {
constexpr std::size_t kMaxMergeFile = 1u << 20;

bool is_ancestor_or_self(const std::string& dir, const std::string& of) {
    return dir == "." || dir == of || (of.size() > dir.size() && of.starts_with(dir) && of[dir.size()] == '/');
}
}  // namespace

Result<void> DirFilterStack::push(const std::string& wire_dir, const std::string& local_dir) {
    if (!active()) return {};
    const auto& merges = list_.dir_merges();
    Level level;
    level.wire_dir = wire_dir;
    level.rules.resize(merges.size());
    level.cleared.assign(merges.size(), false);
    // Per directory: its dir-merge files and what they merge in turn.
    MergeBudget budget{kMaxMergeFilesPerDir, kMaxMergeBytesPerDir};
    for (std::size_t m = 0; m < merges.size(); ++m) {
        const std::string path = join_path(local_dir, merges[m].name);
        auto f = read_ ? read_(path) : Result<MergeFile>(MergeFile{});
        if (!f) return std::unexpected(f.error());
        if (f->state != MergeFile::State::ok) continue;   // no merge file here (or hidden)
        bool clear = false;
        std::vector<FilterRule> rules;
        if (auto r = budget.spend(f->text.size(), path); !r) return r;
        if (auto r = FilterList::parse_merge_text(f->text, merges[m], local_dir, path, read_, 0, budget, rules, clear); !r)
            return r;
        if (live_ + level.count + rules.size() > kMaxLiveRules)
            return fail("more than " + std::to_string(kMaxLiveRules) + " per-directory filter rules in effect at " + local_dir);
        level.count += rules.size();
        level.rules[m] = std::move(rules);
        level.cleared[m] = clear;
    }
    if (live_ + level.count > kMaxLiveRules)
        return fail("more than " + std::to_string(kMaxLiveRules) + " per-directory filter rules in effect at " + local_dir);
    live_ += level.count;
    levels_.push_back(std::move(level));
    return {};
}

void DirFilterStack::pop() {
    if (!active() || levels_.empty()) return;
    live_ -= levels_.back().count;
    levels_.pop_back();
}

Result<void> DirFilterStack::move_to(const std::string& wire_dir,
                                     const std::function<std::string(const std::string&)>& local_of) {
    if (!active()) return {};
    while (!levels_.empty() && !is_ancestor_or_self(levels_.back().wire_dir, wire_dir)) pop();
    if (!levels_.empty() && levels_.back().wire_dir == wire_dir) return {};
    if (levels_.empty()) return push(wire_dir, local_of(wire_dir));
    // Enter each component between the innermost level and `wire_dir`.
    const std::string& top = levels_.back().wire_dir;
    std::size_t pos = top == "." ? 0 : top.size() + 1;
    for (;;) {
        std::size_t slash = wire_dir.find('/', pos);
        std::string dir = slash == std::string::npos ? wire_dir : wire_dir.substr(0, slash);
        if (auto r = push(dir, local_of(dir)); !r) return r;
        if (slash == std::string::npos) return {};
        pos = slash + 1;
    }
}

std::optional<bool> DirFilterStack::check(int merge, const std::string& path, bool is_dir, const FilterList& list) const {
    if (merge < 0 || levels_.empty()) return std::nullopt;
    const auto m = static_cast<std::size_t>(merge);
    const bool no_inherit = m < list.dir_merges().size() && list.dir_merges()[m].no_inherit;
    for (auto it = levels_.rbegin(); it != levels_.rend(); ++it) {
        const Level& level = *it;
        if (m >= level.rules.size()) return std::nullopt;
        // Anchored rules of this file are relative to its directory.
        std::string rel;
        if (level.wire_dir == ".") rel = path;
        else if (path.size() > level.wire_dir.size() && path.starts_with(level.wire_dir) && path[level.wire_dir.size()] == '/')
            rel = path.substr(level.wire_dir.size() + 1);
        else return std::nullopt;   // not below this level: a caller out of tree order
        for (const FilterRule& r : level.rules[m]) {
            if (!list.for_me(r)) continue;
            if (FilterList::matches(r, r.anchored ? rel : path, is_dir)) return !r.include;
        }
        if (no_inherit || level.cleared[m]) break;
    }
    return std::nullopt;
}

MergeReader module_merge_reader(const Context& ctx) {
    return [&ctx](const std::string& path) -> Result<MergeFile> {
        MergeFile f;
        if (path.empty() || path == ".") {
            f.error = EISDIR;
            return f;
        }
        // rsync 3.5 parse_filter_file(): the daemon's rules are checked on the module path
        // before anything is opened; a hidden file is absent, whether it exists or not.
        if (ctx.daemon_path_excluded(path)) {
            f.state = MergeFile::State::hidden;
            return f;
        }
        auto fd = ctx.root.open_strict(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        if (!fd) {
            f.error = fd.error();
            return f;
        }
        struct stat st {};
        if (::fstat(fd->get(), &st) < 0 || !S_ISREG(st.st_mode)) {
            f.error = EINVAL;
            return f;
        }
        if (static_cast<std::size_t>(st.st_size) > kMaxMergeFile)
            return fail("merge file " + path + " is larger than 1 MiB (in " + ctx.module->name + ")");
        std::string text;
        char buf[16384];
        for (;;) {
            ssize_t n = ::read(fd->get(), buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return fail("merge file " + path + ": read failed (in " + ctx.module->name + ")", errno);
            if (n == 0) break;
            text.append(buf, static_cast<std::size_t>(n));
            if (text.size() > kMaxMergeFile)
                return fail("merge file " + path + " is larger than 1 MiB (in " + ctx.module->name + ")");
        }
        f.state = MergeFile::State::ok;
        f.text = std::move(text);
        return f;
    };
}

}  // namespace sfs::server::rsync
