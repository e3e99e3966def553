// syncfsctl: talks to a running syncfs over its control socket (docs/replication.md).
//
//   syncfsctl status [--json] MOUNTPOINT
//   syncfsctl wait [--timeout S] MOUNTPOINT
//   syncfsctl resync MOUNTPOINT
//
// The socket is found from MOUNTPOINT (/run/syncfs/<hash of realpath>.sock), or given with
// --socket PATH, or as STATE_DIR/control.sock with --state DIR.
// Exit codes: 0 ok, 1 the operation failed (wait timed out, mirror errors), 2 usage or
// cannot reach syncfs.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protocol/control/control.h"
#include "tools/status_format.h"

namespace ctl = sfs::protocol::control;

namespace {

sfs::Result<std::string> socket_path(const std::string& mountpoint, const std::string& socket,
                                     const std::string& state) {
    if (!socket.empty()) return socket;
    if (!state.empty()) return state + "/control.sock";
    if (mountpoint.empty()) return sfs::fail("give MOUNTPOINT, --socket PATH or --state DIR");
    char* real = ::realpath(mountpoint.c_str(), nullptr);
    if (!real) return sfs::fail(mountpoint + ": " + std::strerror(errno));
    std::string path = ctl::socket_for_mountpoint(real);
    std::free(real);
    return path;
}

// Sends one request and reads the whole response. `wait_ms` bounds the reply time.
sfs::Result<ctl::Response> call(const std::string& path, const ctl::Request& request, std::int64_t wait_ms,
                                const std::string& what) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) return sfs::fail(path + ": socket path too long");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    sfs::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return sfs::fail("cannot reach syncfs for " + what + " at " + path + ": " + std::strerror(errno) +
                         " (is it mounted with mirror=?)");
    }
    const std::string req = ctl::encode_request(request);
    if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        return sfs::fail(path + ": send: " + std::strerror(errno));
    }
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    char buf[65536];
    while (!ctl::response_complete(text)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return sfs::fail(path + ": no answer from syncfs");
        pollfd p{fd.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return sfs::fail(path + ": syncfs closed the connection before answering");
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > ctl::kMaxResponse) return sfs::fail(path + ": answer too long");
    }
    return ctl::decode_response(text);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"syncfsctl: control a running syncfs mount (status, wait, resync)"};
    app.require_subcommand(1);
    std::string socket, state;
    app.add_option("--socket", socket, "control socket path (default: found from MOUNTPOINT)");
    app.add_option("--state", state, "state directory of the mount (its control.sock is used)");

    std::string mountpoint;
    bool json = false;
    double timeout_s = 0;
    auto* status = app.add_subcommand("status", "show per-mirror replication state");
    status->add_flag("--json", json, "machine-readable output");
    status->add_option("MOUNTPOINT", mountpoint, "the syncfs mount");
    auto* wait = app.add_subcommand("wait", "block until everything written before the call is on every mirror");
    wait->add_option("--timeout", timeout_s, "give up after S seconds (exit 1); default: wait forever");
    wait->add_option("MOUNTPOINT", mountpoint, "the syncfs mount");
    auto* resync = app.add_subcommand("resync", "reconcile the whole tree with every mirror now");
    resync->add_option("MOUNTPOINT", mountpoint, "the syncfs mount");
    CLI11_PARSE(app, argc, argv);

    auto path = socket_path(mountpoint, socket, state);
    if (!path) {
        std::fprintf(stderr, "syncfsctl: %s\n", path.error().message.c_str());
        return 2;
    }
    const std::string what = mountpoint.empty() ? *path : mountpoint;
    ctl::Request request;
    std::int64_t reply_ms = 30000;
    if (status->parsed()) {
        request.command = ctl::Command::Status;
    } else if (wait->parsed()) {
        if (timeout_s < 0) {
            std::fprintf(stderr, "syncfsctl: --timeout must not be negative\n");
            return 2;
        }
        request.command = ctl::Command::Wait;
        request.timeout_ms = static_cast<std::uint64_t>(timeout_s * 1000);
        if (timeout_s > 0 && request.timeout_ms == 0) request.timeout_ms = 1;
        reply_ms = timeout_s > 0 ? static_cast<std::int64_t>(timeout_s * 1000) + 10000 : (1ll << 40);
    } else {
        request.command = ctl::Command::Resync;
    }
    auto response = call(*path, request, reply_ms, what);
    if (!response) {
        std::fprintf(stderr, "syncfsctl: %s\n", response.error().message.c_str());
        return 2;
    }
    if (!response->ok) {
        std::fprintf(stderr, "syncfsctl: %s: %s\n", what.c_str(), response->error.c_str());
        return 1;
    }
    if (status->parsed()) {
        std::fputs((json ? sfs::tools::status_json(response->fields) : sfs::tools::status_text(response->fields)).c_str(),
                   stdout);
    } else if (resync->parsed()) {
        std::printf("resync started for %s (see syncfsctl status)\n", what.c_str());
    }
    return 0;
}
