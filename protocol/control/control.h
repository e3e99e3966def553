// The control-socket protocol between syncfsctl and a running syncfs (docs/replication.md,
// "Control socket"). Pure encode/decode, no I/O.
//
// Request: one line, at most kMaxRequest bytes: "STATUS", "WAIT <timeout_ms>", "RESYNC".
// Response: "OK" or "ERR <message>", then zero or more "key value" lines, then "END".
// Values are escaped so they never contain a newline ('\n' -> "\n", '\\' -> "\\\\").
// Status keys are flat and dotted ("mirror.0.url"); syncfsctl renders them as text or JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace sfs::protocol::control {

inline constexpr std::size_t kMaxRequest = 256;
inline constexpr std::size_t kMaxResponse = 1u << 20;
inline constexpr char kRunDir[] = "/run/syncfs";

enum class Command { Status, Wait, Resync };

struct Request {
    Command command = Command::Status;
    std::uint64_t timeout_ms = 0;  // Wait; 0 = no timeout
};

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Response {
    bool ok = true;
    std::string error;  // when !ok
    Fields fields;
};

std::string encode_request(const Request& request);
Result<Request> decode_request(std::string_view line);  // without the '\n'

std::string encode_response(const Response& response);
// `text` is everything read up to and including the "END\n" line.
Result<Response> decode_response(std::string_view text);
// True when `text` holds a complete response (ends with the END line).
bool response_complete(std::string_view text);

std::string escape(std::string_view value);
std::string unescape(std::string_view value);

// Well-known socket of the mount at `real_mountpoint` (already realpath()ed):
// kRunDir/<16 hex digits of XXH3-64 of the path>.sock.
std::string socket_for_mountpoint(std::string_view real_mountpoint);

}  // namespace sfs::protocol::control
