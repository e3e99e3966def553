// Small durable files in state=DIR besides the journal (docs/journal.md): per-mirror cursor
// files and the clean-stop marker. Every write is atomic (temp file, fdatasync, rename,
// directory fsync), so a crash leaves either the old or the new content.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace sfs::repl {

// 16 hex digits naming a mirror's files: XXH3-64 of its URL.
std::string mirror_id(const std::string& url);

// Writes `content` to dir/name atomically.
Result<void> write_file_atomic(const std::string& dir, const std::string& name, const std::string& content);

// The acked seq stored for a mirror; 0 when absent or unparsable (a warning is logged).
std::uint64_t load_cursor(const std::string& dir, const std::string& mirror_url);
Result<void> save_cursor(const std::string& dir, const std::string& mirror_url, std::uint64_t seq);

// Clean marker: present only between a clean stop and the next start.
bool clean_marker_present(const std::string& dir);
Result<void> write_clean_marker(const std::string& dir);
Result<void> remove_clean_marker(const std::string& dir);

}  // namespace sfs::repl
