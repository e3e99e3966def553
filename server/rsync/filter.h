// The client's filter rules (rsync exclude.c, the parts a daemon sees at protocol 27).
//
// Two sources feed one ordered list, as in rsync's filter_list:
//  - the client's arguments (`--filter RULE`, `-f RULE`, `--exclude`, `--include`,
//    `--exclude-from`, `--include-from`; what `-M`/`--remote-option` passes through), parsed
//    with the full rule syntax: `-` `+` `.` (merge) `:` (dir-merge) `H` `S` `P` `R` `!`,
//    their long names, and the modifiers `! s r e n w + - p` (`/`, `x` and `C` are refused);
//  - the exclude list on the wire, which below protocol 29 only knows the "old prefixes"
//    ("- PAT", "+ PAT", a bare PAT excludes, "!" clears).
// Patterns: fnmatch wildcards, a leading '/' anchors at the transfer root, a trailing '/'
// matches directories only, a pattern without '/' matches the last component, "**"
// crosses '/', "PAT/***" is PAT and everything below it.
//
// Merge files are never opened here: the caller supplies a MergeReader that confines the
// open to the module and applies the daemon's own rules (server/rsync/filter_dirs.h). The
// daemon's rules are a separate list (Context::daemon_filters) checked on their own, so no
// client rule, merged or not, can make the daemon list or accept a name it hides.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "protocol/rsync_wire.h"

namespace sfs::server::rsync {

class DirFilterStack;

// Which role applies the rules: sender-side rules (`H`, `S`, `s`) only act on a sender,
// receiver-side rules (`P`, `R`, `r`) only on a receiver (its deletions).
enum class FilterRole { sender, receiver };

struct FilterRule {
    bool include = false;
    bool anchored = false;
    bool dir_only = false;
    bool has_slash = false;
    bool double_star = false;
    bool subtree = false;       // "PAT/***": PAT itself and everything below it
    bool negate = false;        // `!` modifier: matches what the pattern does not
    bool sender_side = false;   // `s`, H/S
    bool receiver_side = false; // `r`, P/R
    int dir_merge = -1;         // >= 0: placeholder for that dir-merge rule's per-dir rules
    std::string pattern;
};

// A dir-merge (`:`) rule: the file NAME in every directory of the walk adds rules for that
// directory (and, unless `n`, its subdirectories).
struct DirMergeSpec {
    std::string name;             // a plain file name (no '/')
    bool no_prefix = false;       // `+`/`-`: every line is a pattern of that kind
    bool include = false;         // with no_prefix: `+`
    bool word_split = false;      // `w`: split on whitespace instead of lines
    bool no_inherit = false;      // `n`: rules apply to that directory's entries only
    bool sender_side = false, receiver_side = false;
};

// What reading a merge file found. `hidden`: the daemon's rules hide that path, so it is
// never opened (treated as absent, silently, whether it exists or not: rsync 3.5's fix for
// the merge-file bypass of daemon_filter_list).
struct MergeFile {
    enum class State { ok, hidden, missing } state = State::missing;
    int error = 0;       // missing: errno
    std::string text;    // ok
};
// Reads a merge file: `path` is module-relative and sanitized. An error only when the file
// exceeds the bounds or cannot be read once opened.
using MergeReader = std::function<Result<MergeFile>(const std::string& path)>;

// What one expansion of merge files may still read. Depth alone does not bound the work:
// files of N lines `. next` nested 7 deep are N^7 reads from a few KiB of text.
struct MergeBudget {
    std::size_t files;   // merge files still to be read
    std::size_t bytes;   // bytes of merge-file text still to be read
    // Counts one file read of `size` bytes; an error naming `path` when over budget.
    Result<void> spend(std::size_t size, const std::string& path);
};

class FilterList {
public:
    explicit FilterList(FilterRole role = FilterRole::sender) : role_(role) {}
    void set_role(FilterRole role) { role_ = role; }

    // recv_filter_list(): int32 length + rule until 0; bounded in count and length.
    Result<void> receive(protocol::WireReader& in);
    // One rule with the old prefixes (the wire form, and the daemon's own rules).
    void add(std::string_view rule);

    // A rule from the client's arguments. `kind` '-' / '+': --exclude / --include (old
    // prefixes, default kind); 0: --filter (full syntax). `from_file`: --exclude-from /
    // --include-from FILE (module path), read through `read`; a FILE hidden by the daemon
    // refuses the options, as rsyncd does. Merge rules (`.`) are read at once through
    // `read` (relative names from the module root); a missing merge file is an error.
    Result<void> add_arg(std::string_view text, char kind, bool from_file, const MergeReader& read);

    // True when `path` (relative to the transfer root) is excluded. `dirs`: the per-directory
    // rules of the directory `path` is in (nullptr: dir-merge rules contribute nothing).
    bool excluded(const std::string& path, bool is_dir, const DirFilterStack* dirs = nullptr) const;
    bool empty() const { return rules_.empty(); }
    const std::vector<DirMergeSpec>& dir_merges() const { return merges_; }

    // Parses the text of a merge file (`spec` says how) into `out`: rules anchored with '/'
    // are relative to the directory of the file (`dir`, module-relative, for nested
    // merges). A nested dir-merge rule is refused; `clear` is set by a "!" rule.
    // `budget` bounds the nested merge files read on the way; `out` holds at most 10000 rules.
    static Result<void> parse_merge_text(const std::string& text, const DirMergeSpec& spec, const std::string& dir,
                                         const std::string& fname, const MergeReader& read, int depth,
                                         MergeBudget& budget, std::vector<FilterRule>& out, bool& clear);

    // Whether rule `r` matches `path` (relative to the rule's base).
    static bool matches(const FilterRule& r, const std::string& path, bool is_dir);
    // Whether `r` acts for this role.
    bool for_me(const FilterRule& r) const {
        return role_ == FilterRole::sender ? !r.receiver_side || r.sender_side : !r.sender_side || r.receiver_side;
    }

private:
    Result<void> add_parsed(std::string_view text, char kind, const MergeReader& read, int depth,
                            const std::string& where);
    FilterRole role_;
    std::vector<FilterRule> rules_;
    std::vector<DirMergeSpec> merges_;
    // Merge files the client's own rules (`.` in its options) may read in a session.
    MergeBudget session_merges_{1000, 64u << 20};
};

}  // namespace sfs::server::rsync
