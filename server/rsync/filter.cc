// Filter rules: parsing (exclude.c parse_rule_tok / parse_filter_str / parse_filter_file)
// and matching (rule_matches / check_filter). See filter.h for what is supported.
#include "server/rsync/filter.h"

#include <fnmatch.h>

#include <cctype>
#include <cstring>

#include "server/rsync/filter_dirs.h"

namespace sfs::server::rsync {

namespace {

constexpr std::int32_t kMaxRuleLen = 4096;
constexpr std::size_t kMaxRules = 10000;
constexpr int kMaxMergeDepth = 8;   // nested merge files (rsync allows 32)
constexpr std::size_t kMaxDirMerges = 32;   // distinct dir-merge names

// What a merge rule passes on to the rules of its file (rsync's rule template).
struct Template {
    bool no_prefix = false;
    bool include = false;
    bool word_split = false;
    bool sender_side = false, receiver_side = false;
};

struct Parsed {
    enum class Kind { rule, clear, merge, dir_merge } kind = Kind::rule;
    FilterRule rule;       // the flags; the pattern is set by make_rule()
    DirMergeSpec merge;    // merge / dir_merge modifiers
    bool exclude_self = false;
    std::string pattern;
};

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// The shown text of a rule from the client's arguments (bounded for messages).
std::string shown(std::string_view s) {
    std::string out(s.substr(0, 256));
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    return s.size() > 256 ? out + "..." : out;
}

// rule_strcmp(): `s` starts with the long rule name `name`; returns where the modifiers
// start (the separator itself when there are none).
std::optional<std::size_t> long_name(std::string_view s, std::string_view name) {
    if (!s.starts_with(name)) return std::nullopt;
    if (s.size() == name.size() || is_space(s[name.size()]) || s[name.size()] == '_') return name.size();
    if (s[name.size()] == ',') return name.size() + 1;
    return std::nullopt;
}

// Parses one rule from the front of `s` and advances it. nullopt at the end of the input.
// `where` names the source for errors ("--filter" argument, or "FILE line N"); `echo`: the
// rule text may be shown.
Result<std::optional<Parsed>> parse_rule(std::string_view& s, const Template& t, bool old_prefixes,
                                         const std::string& where, bool echo) {
    if (t.word_split)
        while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    if (s.empty()) return std::optional<Parsed>{};
    const std::string_view whole = s;
    auto bad = [&](const std::string& what) -> Result<std::optional<Parsed>> {
        // Text read from a file is not echoed (rsync: it may be a file the client cannot read).
        return fail(what + " in filter rule (" + where + ")" + (echo ? ": " + shown(whole) : std::string()));
    };
    Parsed p;
    p.rule.include = t.include;
    std::size_t i = 0;   // start of the pattern
    if (t.no_prefix) {
        // Every token is a pattern of the template's kind.
    } else if (old_prefixes) {
        if (s.starts_with("- ")) p.rule.include = false, i = 2;
        else if (s.starts_with("+ ")) p.rule.include = true, i = 2;
        else if (s.front() == '!' && (s.size() == 1 || (t.word_split && is_space(s[1])))) p.kind = Parsed::Kind::clear, i = 1;
    } else {
        char ch = 0;
        bool long_form = false;
        static constexpr std::pair<std::string_view, char> kLong[] = {
            {"clear", '!'}, {"dir-merge", ':'}, {"exclude", '-'}, {"hide", 'H'}, {"include", '+'},
            {"merge", '.'}, {"protect", 'P'}, {"risk", 'R'}, {"show", 'S'}};
        for (auto [name, c] : kLong) {
            if (auto at = long_name(s, name)) {
                ch = c;
                i = *at;
                long_form = true;
                break;
            }
        }
        if (!ch) {
            ch = s.front();
            i = s.size() > 1 && s[1] == ',' ? 2 : 1;
        }
        bool side_by_prefix = false;
        switch (ch) {
        case ':': p.kind = Parsed::Kind::dir_merge; break;
        case '.': p.kind = Parsed::Kind::merge; break;
        case '+': p.rule.include = true; break;
        case '-': p.rule.include = false; break;
        case 'S': p.rule.include = true; [[fallthrough]];
        case 'H': p.rule.sender_side = side_by_prefix = true; break;
        case 'R': p.rule.include = true; [[fallthrough]];
        case 'P': p.rule.receiver_side = side_by_prefix = true; break;
        case '!': p.kind = Parsed::Kind::clear; break;
        default: return bad("Unknown filter rule");
        }
        const bool merge = p.kind == Parsed::Kind::merge || p.kind == Parsed::Kind::dir_merge;
        if (ch != '!') {
            for (; i < s.size() && s[i] != ' ' && s[i] != '_'; ++i) {
                const char m = s[i];
                if (t.word_split && is_space(m)) break;
                switch (m) {
                case '-':
                case '+':
                    if (!merge || p.merge.no_prefix) return bad(std::string("invalid modifier '") + m + "'");
                    p.merge.no_prefix = true;
                    p.merge.include = m == '+';
                    break;
                case '!':
                    if (merge) return bad("invalid modifier '!'");
                    p.rule.negate = true;
                    break;
                case 'e':
                    if (!merge) return bad("invalid modifier 'e'");
                    p.exclude_self = true;
                    break;
                case 'n':
                    if (!merge) return bad("invalid modifier 'n'");
                    p.merge.no_inherit = true;
                    break;
                case 'w':
                    if (!merge) return bad("invalid modifier 'w'");
                    p.merge.word_split = true;
                    break;
                case 'r':
                    if (side_by_prefix) return bad("invalid modifier 'r'");
                    p.rule.receiver_side = true;
                    break;
                case 's':
                    if (side_by_prefix) return bad("invalid modifier 's'");
                    p.rule.sender_side = true;
                    break;
                case 'p':
                    break;   // perishable: only matters for rsync's dir pruning; accepted
                case '/':
                case 'x':
                case 'C':
                    return bad(std::string("modifier '") + m + "' is not supported by this server");
                default:
                    return bad(std::string("invalid modifier '") + m + "'");
                }
            }
        }
        // The separator (a short "!" has none: rsync leaves its pointer on the '!').
        if (i < s.size() && !(t.word_split && is_space(s[i])) && (ch != '!' || long_form)) ++i;
        if (merge) {
            p.merge.sender_side = p.rule.sender_side;
            p.merge.receiver_side = p.rule.receiver_side;
        }
    }
    if (t.sender_side || t.receiver_side) {
        if (p.rule.sender_side || p.rule.receiver_side)
            return bad("specified-side merge file contains specified-side filter");
        p.rule.sender_side = t.sender_side;
        p.rule.receiver_side = t.receiver_side;
        p.merge.sender_side = t.sender_side;
        p.merge.receiver_side = t.receiver_side;
    }
    std::size_t end = s.size();
    if (t.word_split) {
        end = i;
        while (end < s.size() && !is_space(s[end])) ++end;
    }
    std::string_view pat = s.substr(std::min(i, s.size()), end - std::min(i, end));
    s.remove_prefix(end);
    if (p.kind == Parsed::Kind::clear) {
        if (!pat.empty() && !old_prefixes && !t.no_prefix) return bad("'!' rule has trailing characters");
        return std::optional<Parsed>(std::move(p));
    }
    if (pat.empty()) return bad("unexpected end of filter rule");
    if (pat.size() > static_cast<std::size_t>(kMaxRuleLen)) return bad("over-long pattern");
    p.pattern = std::string(pat);
    return std::optional<Parsed>(std::move(p));
}

// add_rule(): the pattern's shape. `flags` carries include/negate/sides.
FilterRule make_rule(std::string_view r, FilterRule flags) {
    FilterRule rule = std::move(flags);
    if (!r.empty() && r.front() == '/') { rule.anchored = true; r.remove_prefix(1); }
    if (r.size() > 4 && r.ends_with("/***")) { rule.subtree = true; r.remove_suffix(4); }
    if (r.size() > 1 && r.back() == '/') { rule.dir_only = true; r.remove_suffix(1); }
    rule.pattern = std::string(r);
    rule.has_slash = rule.pattern.find('/') != std::string::npos;
    rule.double_star = rule.pattern.find("**") != std::string::npos;
    return rule;
}

// The module path of merge file `name` named in a rule read in module dir `dir`: an
// absolute name starts at the module root, a relative one at `dir`; "." and empty parts are
// dropped and ".." removes the part before it but never climbs above the module root
// (sanitize_path + clean_fname). The daemon's rules are checked on exactly this path.
std::string merge_path(const std::string& dir, std::string_view name) {
    std::vector<std::string_view> parts;
    auto split = [&parts](std::string_view s) {
        std::size_t i = 0;
        while (i <= s.size()) {
            std::size_t j = s.find('/', i);
            if (j == std::string_view::npos) j = s.size();
            std::string_view comp = s.substr(i, j - i);
            i = j + 1;
            if (comp.empty() || comp == ".") continue;
            if (comp == "..") {
                if (!parts.empty()) parts.pop_back();
                continue;
            }
            parts.push_back(comp);
        }
    };
    if (!name.starts_with("/") && dir != ".") split(dir);
    split(name);
    std::string out;
    for (auto p : parts) {
        if (!out.empty()) out += '/';
        out += p;
    }
    return out;
}

// Splits a merge file's text into rules: lines (blank and '#'/';' lines skipped), or
// whitespace-separated words with `w`. Every rule goes to `sink`.
template <typename Sink>
Result<void> for_each_rule(const std::string& text, const Template& t, bool old_prefixes, const std::string& fname,
                           Sink&& sink) {
    std::size_t line_no = 0, pos = 0, count = 0;
    while (pos < text.size()) {
        std::size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string_view line(text.data() + pos, nl - pos);
        pos = nl + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        if (!t.word_split && (line.front() == '#' || line.front() == ';')) continue;
        if (line.size() > static_cast<std::size_t>(kMaxRuleLen))
            return fail("filter rule longer than 4096 bytes in " + fname + " line " + std::to_string(line_no));
        const std::string where = fname + " line " + std::to_string(line_no);
        for (;;) {
            auto p = parse_rule(line, t, old_prefixes, where, false);
            if (!p) return std::unexpected(p.error());
            if (!*p) break;
            if (++count > kMaxRules) return fail("more than 10000 filter rules in " + fname);
            if (auto r = sink(std::move(**p), where); !r) return r;
            if (!t.word_split) break;
        }
    }
    return {};
}

Template template_of(const DirMergeSpec& m) {
    Template t;
    t.no_prefix = m.no_prefix;
    t.include = m.include;
    t.word_split = m.word_split;
    t.sender_side = m.sender_side;
    t.receiver_side = m.receiver_side;
    return t;
}

// Reads merge file `path` for a rule, bounded in nesting depth and by `budget`.
Result<MergeFile> read_merge(const MergeReader& read, const std::string& path, int depth, MergeBudget& budget) {
    if (depth >= kMaxMergeDepth)
        return fail("merge-file include depth limit (" + std::to_string(kMaxMergeDepth) + ") exceeded at " + path);
    if (!read) return MergeFile{};
    if (budget.files == 0) return fail("too many nested merge files (at " + path + ")");
    auto f = read(path);  // an absent or hidden file costs its open too
    if (f) {
        if (auto r = budget.spend(f->state == MergeFile::State::ok ? f->text.size() : 0, path); !r)
            return std::unexpected(r.error());
    }
    return f;
}

}  // namespace

Result<void> FilterList::receive(protocol::WireReader& in) {
    for (;;) {
        auto len = in.read_i32();
        if (!len) return std::unexpected(len.error());
        if (*len == 0) return {};
        if (rules_.size() >= kMaxRules) return fail("protocol error: more than 10000 exclude rules");
        auto rule = in.read_bytes(*len, kMaxRuleLen, "exclude rule");
        if (!rule) return std::unexpected(rule.error());
        add(*rule);
    }
}

void FilterList::add(std::string_view r) {
    FilterRule flags;
    if (r.starts_with("- ")) r.remove_prefix(2);
    else if (r.starts_with("+ ")) { flags.include = true; r.remove_prefix(2); }
    else if (r == "!") { rules_.clear(); merges_.clear(); return; }
    if (r.empty()) return;
    rules_.push_back(make_rule(r, flags));
}

Result<void> FilterList::add_arg(std::string_view text, char kind, bool from_file, const MergeReader& read) {
    if (!from_file) return add_parsed(text, kind, read, 0, kind ? (kind == '+' ? "--include" : "--exclude") : "--filter");
    // --exclude-from / --include-from FILE: old-prefix lines (options.c OPT_EXCLUDE_FROM).
    const std::string path = merge_path(".", text);
    auto f = read_merge(read, path, 0, session_merges_);
    if (!f) return std::unexpected(f.error());
    if (f->state == MergeFile::State::hidden) return fail("Your options have been rejected by the server.");
    if (f->state == MergeFile::State::missing)
        return fail("failed to open " + std::string(kind == '+' ? "in" : "ex") + "clude file " + shown(text) + ": " +
                    std::strerror(f->error));
    Template t;
    t.include = kind == '+';
    return for_each_rule(f->text, t, true, shown(text), [&](Parsed p, const std::string&) -> Result<void> {
        if (p.kind == Parsed::Kind::clear) {
            rules_.clear();
            merges_.clear();
            return {};
        }
        if (rules_.size() >= kMaxRules) return fail("more than 10000 filter rules");
        rules_.push_back(make_rule(p.pattern, p.rule));
        return {};
    });
}

Result<void> FilterList::add_parsed(std::string_view text, char kind, const MergeReader& read, int depth,
                                    const std::string& where) {
    Template t;
    t.include = kind == '+';
    const bool old_prefixes = kind != 0;
    // One parsed rule into the main list; a merge file's rules go through here too, so a
    // nested merge or dir-merge rule works as if it stood in the arguments.
    std::function<Result<void>(Parsed, const std::string&, int)> handle =
        [&](Parsed p, const std::string& from, int d) -> Result<void> {
        if (rules_.size() >= kMaxRules) return fail("more than 10000 filter rules");
        switch (p.kind) {
        case Parsed::Kind::clear:
            rules_.clear();
            merges_.clear();
            return {};
        case Parsed::Kind::rule:
            rules_.push_back(make_rule(p.pattern, p.rule));
            return {};
        case Parsed::Kind::dir_merge: {
            if (p.pattern.find('/') != std::string::npos)
                return fail("dir-merge file names with a '/' are not supported by this server (" + from +
                            "): " + shown(p.pattern));
            if (p.exclude_self) rules_.push_back(make_rule(p.pattern, FilterRule{}));
            for (const auto& m : merges_)
                if (m.name == p.pattern) return {};   // add_rule(): a name already active is not added again
            // Every directory of a walk is checked for each name: keep that small.
            if (merges_.size() >= kMaxDirMerges)
                return fail("more than " + std::to_string(kMaxDirMerges) + " dir-merge rules (" + from + ")");
            p.merge.name = p.pattern;
            FilterRule placeholder;
            placeholder.dir_merge = static_cast<int>(merges_.size());
            merges_.push_back(p.merge);
            rules_.push_back(std::move(placeholder));
            return {};
        }
        case Parsed::Kind::merge: {
            if (p.exclude_self) {
                auto slash = p.pattern.rfind('/');
                rules_.push_back(make_rule(slash == std::string::npos ? p.pattern : p.pattern.substr(slash + 1), FilterRule{}));
            }
            const std::string path = merge_path(".", p.pattern);
            auto f = read_merge(read, path, d, session_merges_);
            if (!f) return std::unexpected(f.error());
            if (f->state == MergeFile::State::hidden) return {};
            if (f->state == MergeFile::State::missing)
                return fail("failed to open merge file " + shown(p.pattern) + " (" + from + "): " + std::strerror(f->error));
            return for_each_rule(f->text, template_of(p.merge), false, shown(p.pattern),
                                 [&](Parsed q, const std::string& w) { return handle(std::move(q), w, d + 1); });
        }
        }
        return {};
    };
    std::string_view s = text;
    if (s.size() > static_cast<std::size_t>(kMaxRuleLen)) return fail("filter rule longer than 4096 bytes (" + where + ")");
    auto p = parse_rule(s, t, old_prefixes, where, true);
    if (!p) return std::unexpected(p.error());
    if (!*p) return {};
    return handle(std::move(**p), where, depth);
}

Result<void> MergeBudget::spend(std::size_t size, const std::string& path) {
    if (files == 0) return fail("too many nested merge files (at " + path + ")");
    if (size > bytes) return fail("too much merge-file text (at " + path + ")");
    --files;
    bytes -= size;
    return {};
}

Result<void> FilterList::parse_merge_text(const std::string& text, const DirMergeSpec& spec, const std::string& dir,
                                          const std::string& fname, const MergeReader& read, int depth,
                                          MergeBudget& budget, std::vector<FilterRule>& out, bool& clear) {
    Template t = template_of(spec);
    return for_each_rule(text, t, false, fname, [&](Parsed p, const std::string& where) -> Result<void> {
        switch (p.kind) {
        case Parsed::Kind::clear:
            out.clear();
            clear = true;
            return {};
        case Parsed::Kind::rule:
            if (out.size() >= kMaxRules) return fail("more than 10000 filter rules in " + fname);
            out.push_back(make_rule(p.pattern, p.rule));
            return {};
        case Parsed::Kind::dir_merge:
            return fail("a dir-merge rule inside a per-directory merge file is not supported by this server (" +
                        where + ")");
        case Parsed::Kind::merge: {
            if (p.exclude_self) {
                auto slash = p.pattern.rfind('/');
                out.push_back(make_rule(slash == std::string::npos ? p.pattern : p.pattern.substr(slash + 1), FilterRule{}));
            }
            const std::string path = merge_path(dir, p.pattern);
            auto f = read_merge(read, path, depth + 1, budget);
            if (!f) return std::unexpected(f.error());
            if (f->state != MergeFile::State::ok) return {};   // per-directory: absent is normal
            DirMergeSpec nested = p.merge;
            return parse_merge_text(f->text, nested, dir, path, read, depth + 1, budget, out, clear);
        }
        }
        return {};
    });
}

bool FilterList::matches(const FilterRule& r, const std::string& path, bool is_dir) {
    auto one = [&](const std::string& p, bool dir) {
        if (r.dir_only && !dir) return false;
        int flags = r.double_star ? 0 : FNM_PATHNAME;
        if (r.anchored) return fnmatch(r.pattern.c_str(), p.c_str(), flags) == 0;
        if (!r.has_slash) {
            auto slash = p.rfind('/');
            const char* base = slash == std::string::npos ? p.c_str() : p.c_str() + slash + 1;
            return fnmatch(r.pattern.c_str(), base, flags) == 0;
        }
        // Match the whole path or any tail starting after a '/'.
        std::size_t pos = 0;
        for (;;) {
            if (fnmatch(r.pattern.c_str(), p.c_str() + pos, flags) == 0) return true;
            auto next = p.find('/', pos);
            if (next == std::string::npos) return false;
            pos = next + 1;
        }
    };
    bool hit = false;
    if (r.subtree) {
        // The directory PAT names (any leading part of `path`) or `path` itself.
        for (std::size_t s = path.find('/'); s != std::string::npos && !hit; s = path.find('/', s + 1))
            hit = one(path.substr(0, s), true);
        hit = hit || one(path, is_dir || !r.dir_only);
    } else {
        hit = one(path, is_dir);
    }
    return hit != r.negate;
}

bool FilterList::excluded(const std::string& path, bool is_dir, const DirFilterStack* dirs) const {
    for (const FilterRule& r : rules_) {
        if (r.dir_merge >= 0) {
            if (!dirs) continue;
            if (auto v = dirs->check(r.dir_merge, path, is_dir, *this)) return *v;
            continue;
        }
        if (!for_me(r)) continue;
        if (matches(r, path, is_dir)) return !r.include;
    }
    return false;
}

}  // namespace sfs::server::rsync
