#include "common/config/conf_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/unique_fd.h"

namespace sfs::config {
namespace {

constexpr std::size_t kMaxFileSize = 16u << 20;

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::string where(const std::string& path, int line) {
    return path + ":" + std::to_string(line) + ": ";
}

}  // namespace

std::string normalize_key(std::string_view key) {
    std::string out;
    out.reserve(key.size());
    for (char c : key) {
        if (c == ' ' || c == '\t' || c == '_') continue;
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return out;
}

namespace {

constexpr int kMaxIncludeDepth = 16;

Result<std::string> read_text(const std::string& path);

// The files an `&include`/`&merge` argument names: the file itself, or a directory's
// entries matching `*<suffix>` in byte order (rsync sorts them the same way).
Result<std::vector<std::string>> directive_files(const std::string& arg, const std::string& suffix) {
    struct stat st {};
    if (::stat(arg.c_str(), &st) < 0) return fail("unable to stat config file \"" + arg + "\": " + std::strerror(errno));
    if (!S_ISDIR(st.st_mode)) return std::vector<std::string>{arg};
    std::vector<std::string> out;
    DIR* d = ::opendir(arg.c_str());
    if (!d) return fail("unable to open config dir \"" + arg + "\": " + std::strerror(errno));
    while (dirent* de = ::readdir(d)) {
        std::string_view n = de->d_name;
        if (n.size() > suffix.size() && n.ends_with(suffix) && n.front() != '.') out.push_back(arg + "/" + std::string(n));
        if (out.size() > 10000) break;
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
}

// Parses `text` into `file`. `current` is the index of the section lines go to, or -1 for
// the global section; it is updated so a `&merge` continues where the merged file ended.
Result<void> parse_into(File& file, std::string_view text, const std::string& path, bool is_main, int depth,
                        long& current) {
    auto section = [&]() -> Section& {
        return current < 0 ? file.global : file.sections[static_cast<std::size_t>(current)];
    };
    const std::string source = is_main ? std::string() : path;
    int line_no = 0;
    std::size_t pos = 0;

    while (pos < text.size()) {
        // Gather one logical line, joining `\` continuations.
        ++line_no;
        const int start_line = line_no;
        std::string logical;
        for (;;) {
            std::size_t end = text.find('\n', pos);
            std::string_view raw = text.substr(pos, end == std::string_view::npos ? text.npos : end - pos);
            pos = end == std::string_view::npos ? text.size() : end + 1;
            if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
            if (raw.find('\0') != std::string_view::npos)
                return fail(where(path, line_no) + "NUL byte in configuration line");
            std::string_view t = trim(raw);
            if (!t.empty() && t.back() == '\\' && pos < text.size()) {
                t.remove_suffix(1);
                logical.append(trim(t));
                logical.push_back(' ');  // the joined pieces are separated by one space
                ++line_no;
                continue;
            }
            if (!t.empty() && t.back() == '\\') t.remove_suffix(1);  // at EOF: drop it
            logical.append(t);
            break;
        }

        std::string_view l = trim(logical);
        if (l.empty() || l.front() == '#' || l.front() == ';') continue;

        if (l.front() == '&') {
            // `&include PATH`, `&include = PATH` (likewise &merge).
            std::size_t e = l.find_first_of(" \t=");
            std::string name = normalize_key(l.substr(0, e));
            std::string_view arg = e == std::string_view::npos ? std::string_view() : trim(l.substr(e));
            if (arg.starts_with("=")) arg = trim(arg.substr(1));
            const bool include = name == "&include";
            if (!include && name != "&merge")
                return fail(where(path, start_line) + "unknown directive '" + std::string(l.substr(0, e)) + "'");
            if (arg.empty()) return fail(where(path, start_line) + name + " needs a file or directory");
            if (depth >= kMaxIncludeDepth)
                return fail(where(path, start_line) + name + " nested more than " + std::to_string(kMaxIncludeDepth) +
                            " levels (a loop?)");
            std::string target(arg);
            if (target.front() != '/') {
                auto slash = path.rfind('/');
                if (slash != std::string::npos) target = path.substr(0, slash + 1) + target;
            }
            auto files = directive_files(target, include ? ".conf" : ".inc");
            if (!files) return fail(where(path, start_line) + files.error().message);
            for (const auto& f : *files) {
                auto t = read_text(f);
                if (!t) return fail(where(path, start_line) + t.error().message);
                if (!include) {
                    if (auto r = parse_into(file, *t, f, false, depth + 1, current); !r) return r;
                    continue;
                }
                File sub;
                sub.path = f;
                long sub_current = -1;
                if (auto r = parse_into(sub, *t, f, false, depth + 1, sub_current); !r) return r;
                for (auto& sec : sub.sections) {
                    sec.inherited.insert(sec.inherited.begin(), sub.global.entries.begin(), sub.global.entries.end());
                    file.sections.push_back(std::move(sec));
                }
            }
            if (include) current = -1;   // rsync's "]pop" leaves the parser in the global section
            continue;
        }

        if (l.front() == '[') {
            std::size_t close = l.find(']');
            if (close == std::string_view::npos)
                return fail(where(path, start_line) + "section header without closing ']'");
            const std::string_view trailing = trim(l.substr(close + 1));
            std::string_view name = trim(l.substr(1, close - 1));
            if (name.empty()) return fail(where(path, start_line) + "empty section name '[]'");
            if (name.find('/') != std::string_view::npos)
                return fail(where(path, start_line) + "section name must not contain '/'");
            if (normalize_key(name) == "global") {
                // rsync's [global] header returns to the global section.
                current = -1;
                continue;
            }
            file.sections.push_back(Section{std::string(name), start_line, {}, {}, source, std::string(trailing)});
            current = static_cast<long>(file.sections.size()) - 1;
            continue;
        }

        std::size_t eq = l.find('=');
        if (eq == std::string_view::npos)
            return fail(where(path, start_line) + "expected 'name = value' or '[section]', got '" +
                        std::string(l.substr(0, 80)) + "'");
        std::string_view key = trim(l.substr(0, eq));
        if (key.empty()) return fail(where(path, start_line) + "missing option name before '='");
        std::string norm = normalize_key(key);
        if (norm.empty()) return fail(where(path, start_line) + "missing option name before '='");
        section().entries.push_back(
            Entry{std::string(key), std::move(norm), std::string(trim(l.substr(eq + 1))), start_line, source});
    }
    return {};
}

Result<std::string> read_text(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(path + ": cannot open: " + std::strerror(errno), errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail(path + ": fstat: " + std::strerror(errno), errno);
    if (!S_ISREG(st.st_mode)) return fail(path + ": not a regular file");
    if (static_cast<std::size_t>(st.st_size) > kMaxFileSize) return fail(path + ": file too large");
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(path + ": read: " + std::strerror(errno), errno);
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxFileSize) return fail(path + ": file too large");
    }
    return text;
}

}  // namespace

Result<File> parse(std::string_view text, const std::string& path) {
    File file;
    file.path = path;
    long current = -1;
    if (auto r = parse_into(file, text, path, true, 0, current); !r) return std::unexpected(r.error());
    return file;
}

Result<File> load(const std::string& path) {
    auto text = read_text(path);
    if (!text) return std::unexpected(text.error());
    return parse(*text, path);
}

Result<bool> parse_bool(std::string_view value) {
    std::string v = normalize_key(value);
    if (v == "yes" || v == "true" || v == "1") return true;
    if (v == "no" || v == "false" || v == "0") return false;
    return fail("expected a boolean (yes/no/true/false/1/0), got '" + std::string(value) + "'");
}

Result<long long> parse_int(std::string_view value, long long min, long long max) {
    long long v = 0;
    auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || ptr != value.data() + value.size() || value.empty())
        return fail("expected an integer, got '" + std::string(value) + "'");
    if (v < min || v > max)
        return fail("value " + std::string(value) + " out of range [" + std::to_string(min) + ", " +
                    std::to_string(max) + "]");
    return v;
}

}  // namespace sfs::config
