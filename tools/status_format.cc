#include "tools/status_format.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sfs::tools {
namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                if (c < 0x20) {
                    char b[8];
                    std::snprintf(b, sizeof b, "\\u%04x", c);
                    out += b;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out + "\"";
}

bool is_integer(const std::string& v) {
    if (v.empty() || v.size() > 19) return false;
    std::size_t i = v[0] == '-' ? 1 : 0;
    if (i == v.size()) return false;
    return std::all_of(v.begin() + static_cast<std::ptrdiff_t>(i), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string json_value(const std::string& key, const std::string& v) {
    if (v == "true" || v == "false") return v;
    // Text fields that happen to be digits stay strings.
    if (is_integer(v) && key.find("url") == std::string::npos && key.find("error") == std::string::npos &&
        key.find("progress") == std::string::npos && key != "source" && key != "mountpoint" && key != "state_dir") {
        return v;
    }
    return json_string(v);
}

// A tiny ordered tree: objects keep the order fields arrived in.
struct Node {
    std::vector<std::pair<std::string, Node>> children;
    std::string leaf;
    bool is_leaf = false;
    Node& child(const std::string& k) {
        for (auto& [name, n] : children) {
            if (name == k) return n;
        }
        children.emplace_back(k, Node{});
        return children.back().second;
    }
};

void render(const Node& n, const std::string& key, std::string& out, int depth) {
    if (n.is_leaf) {
        out += json_value(key, n.leaf);
        return;
    }
    const std::string pad(static_cast<std::size_t>(depth + 1) * 2, ' ');
    const bool array = key == "mirrors";
    out += array ? "[\n" : "{\n";
    for (std::size_t i = 0; i < n.children.size(); ++i) {
        out += pad;
        if (!array) out += json_string(n.children[i].first) + ": ";
        render(n.children[i].second, n.children[i].first, out, depth + 1);
        out += i + 1 < n.children.size() ? ",\n" : "\n";
    }
    out += std::string(static_cast<std::size_t>(depth) * 2, ' ') + (array ? "]" : "}");
}

std::string ago(const std::string& unix_ms) {
    if (!is_integer(unix_ms) || unix_ms == "0") return "never";
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const long long d = now - std::stoll(unix_ms);
    char b[64];
    if (d < 1000) std::snprintf(b, sizeof b, "%lld ms ago", d);
    else std::snprintf(b, sizeof b, "%.1f s ago", static_cast<double>(d) / 1000.0);
    return b;
}

// The journal cap as the mount option spells it ("journal_max=1G"), "" when there is none.
std::string journal_cap(const std::string& bytes) {
    if (!is_integer(bytes) || bytes == "0") return {};
    const unsigned long long n = std::stoull(bytes);
    for (auto [shift, suffix] : {std::pair{30, "G"}, {20, "M"}, {10, "K"}}) {
        if (n % (1ull << shift) == 0) return " (cap journal_max=" + std::to_string(n >> shift) + suffix + ")";
    }
    return " (cap journal_max=" + bytes + ")";
}

}  // namespace

std::string status_json(const protocol::control::Fields& fields) {
    Node root;
    for (const auto& [key, value] : fields) {
        Node* n = &root;
        std::string k = key;
        // mirror.N.x -> mirrors[N].x ("mirrors" itself is a count: kept as mirror_count)
        if (k == "mirrors") k = "mirror_count";
        if (k.starts_with("mirror.")) k = "mirrors." + k.substr(7);
        std::size_t start = 0;
        for (;;) {
            auto dot = k.find('.', start);
            if (dot == std::string::npos) {
                Node& leaf = n->child(k.substr(start));
                leaf.is_leaf = true;
                leaf.leaf = value;
                break;
            }
            n = &n->child(k.substr(start, dot - start));
            start = dot + 1;
        }
    }
    std::string out;
    render(root, "", out, 0);
    return out + "\n";
}

std::string status_text(const protocol::control::Fields& fields) {
    std::map<std::string, std::string> f(fields.begin(), fields.end());
    auto get = [&](const std::string& k) { return f.count(k) ? f[k] : std::string(); };
    std::string out;
    out += "source     " + get("source") + "\n";
    out += "mountpoint " + get("mountpoint") + "\n";
    out += "state      " + get("state_dir") + (get("sync") == "true" ? "  (-o sync)" : "") + "\n";
    out += "journal    seq " + get("journal.last_seq") + " (durable " + get("journal.durable_seq") + "), " +
           get("journal.bytes") + " bytes on disk" + journal_cap(get("journal.max")) + "\n";
    if (!get("journal.error").empty()) out += "           error: " + get("journal.error") + "\n";
    if (!get("watcher.mode").empty()) {
        out += "watcher    " + get("watcher.mode") +
               (get("watcher.running") == "false" ? ", NOT running" : "") +
               (get("watcher.events_seen").empty()
                    ? std::string()
                    : ", " + get("watcher.events_seen") + " events, " + get("watcher.changes_reported") +
                          " outside changes, " + get("watcher.own_dropped") + " own dropped, " +
                          get("watcher.overflows") + " overflows, " + get("watcher.changes_pending") + " pending") +
               "\n";
        if (!get("watcher.last_error").empty()) out += "  error    " + get("watcher.last_error") + "\n";
    }
    const int n = is_integer(get("mirrors")) ? std::stoi(get("mirrors")) : 0;
    for (int i = 0; i < n; ++i) {
        const std::string p = "mirror." + std::to_string(i) + ".";
        out += "mirror     " + get(p + "url") + "\n";
        out += "  state    " + get(p + "state") + (get(p + "connected") == "true" ? ", connected" : ", NOT connected") +
               (get(p + "reconcile_pending") == "true" ? ", reconcile pending" : "") + "\n";
        out += "  backlog  " + get(p + "backlog_ops") + " ops, " + get(p + "backlog_bytes") + " bytes, lag " +
               get(p + "lag_ms") + " ms\n";
        out += "  acked    seq " + get(p + "acked_seq") + ", last ack " + ago(get(p + "last_ack_unix_ms")) + "\n";
        out += "  sent     " + get(p + "bytes_sent") + " bytes, " + get(p + "reconnects") + " reconnects, " +
               get(p + "errors") + " errors\n";
        if (!get(p + "last_error").empty()) {
            out += "  error    " + get(p + "last_error") + " (" + ago(get(p + "last_error_unix_ms")) + ")\n";
        }
        if (!get(p + "reconcile_progress").empty()) out += "  reconcile " + get(p + "reconcile_progress") + "\n";
    }
    return out;
}

}  // namespace sfs::tools
