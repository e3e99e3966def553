#include "server/daemon/name_converter.h"

#include <charconv>
#include <utility>

#include <spdlog/spdlog.h>

namespace sfs::server {

namespace {

constexpr std::size_t kMaxName = 255;   // a name travels in the uid/gid list with a byte length

// namecvt_safe_token(): no control characters (a '\n' would forge a second request).
bool safe_token(const std::string& s) {
    if (s.empty() || s.size() > kMaxName) return false;
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

}  // namespace

std::optional<std::string> NameConverter::ask(const std::string& line) {
    std::lock_guard l(mu_);
    if (dead_) return std::nullopt;
    auto reply = exec_.converse(line, kReplyTimeoutMs, kMaxReply);
    if (reply) return std::move(*reply);
    dead_ = true;
    failure_ = "name converter of module " + module_ + " failed (" + reply.error().message +
               "); user and group ids are kept numerically";
    spdlog::error("module {}: name converter '{}' failed on request '{}': {}; it is stopped and ids are kept "
                  "numerically for the rest of this connection",
                  module_, command_, line.substr(0, 64), reply.error().message);
    exec_.stop(0);
    return std::nullopt;
}

std::optional<std::string> NameConverter::name_of(const char* cmd, std::uint32_t id) {
    auto reply = ask(std::string(cmd) + " " + std::to_string(id));
    if (!reply || reply->empty()) return std::nullopt;
    if (!safe_token(*reply)) {
        spdlog::warn("module {}: name converter answered '{} {}' with an invalid name; treated as unknown", module_,
                     cmd, id);
        return std::nullopt;
    }
    return reply;
}

std::optional<std::uint32_t> NameConverter::id_of(const char* cmd, const std::string& name) {
    if (!safe_token(name)) return std::nullopt;   // never sent: it could forge requests
    auto reply = ask(std::string(cmd) + " " + name);
    if (!reply || reply->empty()) return std::nullopt;
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(reply->data(), reply->data() + reply->size(), v);
    if (ec != std::errc() || p != reply->data() + reply->size() || reply->front() == '-' || reply->front() == '+') {
        spdlog::warn("module {}: name converter answered '{} {}' with a non-numeric id; treated as unknown", module_,
                     cmd, name);
        return std::nullopt;
    }
    return v;
}

std::string NameConverter::take_failure() {
    std::lock_guard l(mu_);
    return std::exchange(failure_, std::string());
}

}  // namespace sfs::server
