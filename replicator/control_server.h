// The control socket of a running syncfs: state=DIR/control.sock, plus a symlink
// /run/syncfs/<hash of realpath(MOUNTPOINT)>.sock so `syncfsctl status MOUNTPOINT` finds it.
// One thread accepts; each connection is served on its own thread (at most kMaxClients at a
// time) because WAIT may block for its whole timeout. Wire format: protocol/control/control.h.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protocol/control/control.h"

namespace sfs::repl {

class ControlServer {
public:
    using Handler = std::function<protocol::control::Response(const protocol::control::Request&)>;

    // Binds socket_path (replacing a stale socket) and, if link_path is non-empty, points
    // link_path at it. Starts serving.
    static Result<std::unique_ptr<ControlServer>> start(std::string socket_path, std::string link_path, Handler handler);
    ~ControlServer();  // stops, removes the socket and the link

private:
    ControlServer() = default;
    void accept_loop();
    void serve(UniqueFd client);

    static constexpr int kMaxClients = 16;
    std::string socket_path_, link_path_;
    Handler handler_;
    UniqueFd listen_fd_;
    UniqueFd wake_fd_;  // eventfd: stop
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::mutex mu_;
    struct Client {
        std::thread thread;
        std::shared_ptr<std::atomic<bool>> done;
    };
    std::list<Client> clients_;  // finished ones are joined on the next accept
};

}  // namespace sfs::repl
