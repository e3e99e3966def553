#include "replicator/control_server.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace sfs::repl {
namespace ctl = protocol::control;

Result<std::unique_ptr<ControlServer>> ControlServer::start(std::string socket_path, std::string link_path,
                                                            Handler handler) {
    std::unique_ptr<ControlServer> s(new ControlServer());
    s->socket_path_ = std::move(socket_path);
    s->handler_ = std::move(handler);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (s->socket_path_.size() >= sizeof addr.sun_path) {
        return fail(s->socket_path_ + ": control socket path too long (max " + std::to_string(sizeof addr.sun_path - 1) +
                    " bytes); use a shorter state=DIR");
    }
    std::memcpy(addr.sun_path, s->socket_path_.c_str(), s->socket_path_.size() + 1);
    s->listen_fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s->listen_fd_) return fail(std::string("control socket: ") + std::strerror(errno), errno);
    ::unlink(s->socket_path_.c_str());  // stale from a killed process (the state dir is locked by us)
    if (::bind(s->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::chmod(s->socket_path_.c_str(), 0600) != 0 || ::listen(s->listen_fd_.get(), 16) != 0) {
        return fail(s->socket_path_ + ": control socket: " + std::strerror(errno), errno);
    }
    s->wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!link_path.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(std::filesystem::path(link_path).parent_path(), ec);
        ::unlink(link_path.c_str());
        if (::symlink(s->socket_path_.c_str(), link_path.c_str()) != 0) {
            spdlog::warn("{}: cannot link the control socket here ({}); use syncfsctl --socket {}", link_path,
                         std::strerror(errno), s->socket_path_);
        } else {
            s->link_path_ = std::move(link_path);
        }
    }
    s->acceptor_ = std::thread([p = s.get()] { p->accept_loop(); });
    return s;
}

ControlServer::~ControlServer() {
    stop_ = true;
    std::uint64_t one = 1;
    if (wake_fd_) (void)!::write(wake_fd_.get(), &one, sizeof one);
    if (acceptor_.joinable()) acceptor_.join();
    std::list<Client> clients;
    {
        std::lock_guard lock(mu_);
        clients.swap(clients_);
    }
    for (auto& c : clients) c.thread.join();
    if (!link_path_.empty()) {
        char target[4096];
        ssize_t n = ::readlink(link_path_.c_str(), target, sizeof target);
        if (n > 0 && std::string(target, static_cast<std::size_t>(n)) == socket_path_) ::unlink(link_path_.c_str());
    }
    ::unlink(socket_path_.c_str());
}

void ControlServer::accept_loop() {
    while (!stop_) {
        pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            spdlog::error("control socket {}: poll: {}", socket_path_, std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        if (!(fds[0].revents & POLLIN)) continue;
        UniqueFd client(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) continue;
        std::lock_guard lock(mu_);
        for (auto it = clients_.begin(); it != clients_.end();) {
            if (it->done->load()) {
                it->thread.join();
                it = clients_.erase(it);
            } else {
                ++it;
            }
        }
        if (clients_.size() >= kMaxClients) continue;  // closes it: too many at once
        auto done = std::make_shared<std::atomic<bool>>(false);
        clients_.push_back(Client{std::thread([this, done, c = std::move(client)]() mutable {
                                      serve(std::move(c));
                                      done->store(true);
                                  }),
                                  done});
    }
}

void ControlServer::serve(UniqueFd client) {
    // Read one request line (bounded), answer, close.
    std::string line;
    char buf[256];
    timeval tv{5, 0};
    ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (line.find('\n') == std::string::npos && line.size() <= ctl::kMaxRequest) {
        ssize_t n = ::read(client.get(), buf, sizeof buf);
        if (n <= 0) break;
        line.append(buf, static_cast<std::size_t>(n));
    }
    ctl::Response response;
    auto nl = line.find('\n');
    if (nl == std::string::npos) {
        response = ctl::Response{false, "incomplete or oversized request", {}};
    } else {
        auto request = ctl::decode_request(std::string_view(line).substr(0, nl));
        response = request ? handler_(*request) : ctl::Response{false, request.error().message, {}};
    }
    const std::string out = ctl::encode_response(response);
    std::size_t done = 0;
    while (done < out.size()) {
        ssize_t n = ::send(client.get(), out.data() + done, out.size() - done, MSG_NOSIGNAL);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
    }
}

}  // namespace sfs::repl
