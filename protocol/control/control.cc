#include "protocol/control/control.h"

#include <xxhash.h>

#include <cinttypes>
#include <cstdio>

namespace sfs::protocol::control {

std::string encode_request(const Request& r) {
    switch (r.command) {
        case Command::Status: return "STATUS\n";
        case Command::Wait: return "WAIT " + std::to_string(r.timeout_ms) + "\n";
        case Command::Resync: return "RESYNC\n";
    }
    return "STATUS\n";
}

Result<Request> decode_request(std::string_view line) {
    if (line.size() > kMaxRequest) return fail("control request too long");
    if (line == "STATUS") return Request{Command::Status, 0};
    if (line == "RESYNC") return Request{Command::Resync, 0};
    if (line.starts_with("WAIT ")) {
        std::string_view digits = line.substr(5);
        if (digits.empty() || digits.size() > 12) return fail("WAIT: bad timeout");
        std::uint64_t v = 0;
        for (char c : digits) {
            if (c < '0' || c > '9') return fail("WAIT: bad timeout");
            v = v * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return Request{Command::Wait, v};
    }
    return fail("unknown control request '" + std::string(line.substr(0, 32)) + "'");
}

std::string escape(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\n') out += "\\n";
        else if (c == '\\') out += "\\\\";
        else out += c;
    }
    return out;
}

std::string unescape(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (std::size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\\' && i + 1 < value.size()) {
            ++i;
            out += value[i] == 'n' ? '\n' : value[i];
        } else {
            out += value[i];
        }
    }
    return out;
}

std::string encode_response(const Response& r) {
    std::string out = r.ok ? "OK\n" : "ERR " + escape(r.error) + "\n";
    for (const auto& [k, v] : r.fields) out += k + " " + escape(v) + "\n";
    out += "END\n";
    return out;
}

bool response_complete(std::string_view text) { return text == "END\n" || text.ends_with("\nEND\n"); }

Result<Response> decode_response(std::string_view text) {
    if (text.size() > kMaxResponse) return fail("control response too long");
    if (!response_complete(text)) return fail("control response truncated");
    Response r;
    std::size_t pos = 0;
    bool first = true;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl - pos);
        pos = nl + 1;
        if (first) {
            first = false;
            if (line == "OK") continue;
            if (line.starts_with("ERR ")) {
                r.ok = false;
                r.error = unescape(line.substr(4));
                continue;
            }
            return fail("control response: bad status line");
        }
        if (line == "END") break;
        auto sp = line.find(' ');
        if (sp == std::string_view::npos || sp == 0) return fail("control response: bad field line");
        r.fields.emplace_back(std::string(line.substr(0, sp)), unescape(line.substr(sp + 1)));
    }
    return r;
}

std::string socket_for_mountpoint(std::string_view real_mountpoint) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016" PRIx64,
                  static_cast<std::uint64_t>(XXH3_64bits(real_mountpoint.data(), real_mountpoint.size())));
    return std::string(kRunDir) + "/" + hex + ".sock";
}

}  // namespace sfs::protocol::control
