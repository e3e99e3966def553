// Generic reader for the rsyncd.conf file format (also used by syncfsd.conf).
//
// The format: an optional global section (lines before the first `[name]`), then `[name]`
// sections; `name = value` lines; `#` or `;` starts a comment line; a line ending in `\`
// continues on the next one. Option names compare case-insensitively with spaces and
// underscores ignored, as rsync's strwicmp() does ("read only" == "Read_Only" == "readonly").
// As in rsync's params.c there are no trailing comments: text after a section header's `]`
// is ignored (kept in Section::trailing), and a `#` after a value is part of the value.
//
// This layer knows no parameter names: it only splits the file into sections of
// (key, value, line) entries and reports malformed lines as `file:line: why`. Which keys
// exist, their types and defaults are decided by the program that owns the file.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sfs::config {

struct Entry {
    std::string key;        // as written (trimmed), for messages
    std::string norm_key;   // normalized: lower case, no spaces/underscores
    std::string value;      // trimmed; continuation lines joined
    int line = 0;           // 1-based line of the `key = value` start
    std::string source;     // the file it came from when not the main file (&include/&merge)
};

struct Section {
    std::string name;  // empty for the global section
    int line = 0;      // line of the `[name]` header (0 for global)
    std::vector<Entry> entries;
    // For a section from an `&include`d file: that file's own global lines, which are
    // defaults for its sections only (rsync pushes and pops the globals around it).
    std::vector<Entry> inherited;
    std::string source;  // the file of the `[name]` header when not the main file
    std::string trailing;  // text after the header's `]`, ignored as rsync does (EatComment)
};

struct File {
    std::string path;
    Section global;
    std::vector<Section> sections;  // in file order; a repeated [name] is merged by the caller
};

// Normalizes an option name: lower case, spaces, tabs and underscores dropped.
std::string normalize_key(std::string_view key);

// Parses `text`; `path` names the file in messages and anchors relative `&include` /
// `&merge` paths. The directives (rsyncd.conf(5)) take a file or a directory (then its
// `*.conf` resp. `*.inc` files in name order): `&merge` inserts the file's lines in place,
// `&include` adds the file's sections with its global lines as their private defaults and
// returns the including file to its global section. Nesting is limited to 16 levels.
Result<File> parse(std::string_view text, const std::string& path);

// Reads and parses `path`. Files larger than 16 MiB are refused.
Result<File> load(const std::string& path);

// Booleans as rsyncd accepts them: yes/no/true/false/1/0 (any case).
Result<bool> parse_bool(std::string_view value);

// A decimal integer in [min, max].
Result<long long> parse_int(std::string_view value, long long min, long long max);

}  // namespace sfs::config
