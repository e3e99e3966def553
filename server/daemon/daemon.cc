#include "server/daemon/daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/tcp_liveness.h"
#include "common/unique_fd.h"
#include "server/daemon/connection.h"
#include "server/daemon/pid_file.h"

namespace sfs::server {
namespace {

constexpr std::size_t kMaxChildren = 1024;  // beyond this, new connections are closed at once
// Keepalive on every accepted connection (common/tcp_liveness.h): a client gone without a
// word (partition, power loss) frees its connection process, and its `max connections`
// slot, about 2 minutes after the connection fell silent (60 s + 6 x 10 s). Keepalive only,
// no TCP_USER_TIMEOUT: that would also drop a live client that is merely slow to read, which
// rsyncd leaves to the module's `timeout`.
void keep_alive(int fd) { set_tcp_keepalive(fd, std::chrono::seconds(60), std::chrono::seconds(10), 6); }

// Numeric address of a socket peer; IPv4-mapped IPv6 shown as IPv4. "0.0.0.0" when the fd
// is not an inet socket (rsync's client_addr() does the same).
std::string peer_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "0.0.0.0";
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
    } else if (ss.ss_family == AF_INET6) {
        auto* a6 = &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) inet_ntop(AF_INET, a6->s6_addr + 12, buf, sizeof buf);
        else inet_ntop(AF_INET6, a6, buf, sizeof buf);
    } else {
        return "0.0.0.0";
    }
    return buf;
}

// rsync clientname.c client_addr() in daemon-over-rsh mode: the first word of the first
// set variable, if it is a numeric address; otherwise 0.0.0.0.
std::string remote_shell_peer_address() {
    for (const char* name : {"REMOTE_HOST", "SSH_CONNECTION", "SSH_CLIENT", "SSH2_CLIENT"}) {
        const char* v = std::getenv(name);
        if (!v) continue;
        std::string a(v, ::strnlen(v, 256));
        if (auto sp = a.find(' '); sp != std::string::npos) a.resize(sp);
        unsigned char buf[sizeof(in6_addr)];
        if (inet_pton(AF_INET, a.c_str(), buf) == 1 || inet_pton(AF_INET6, a.c_str(), buf) == 1) return a;
        break;
    }
    return "0.0.0.0";
}

Result<std::vector<UniqueFd>> open_listeners(const std::string& address, int port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    std::string service = std::to_string(port);
    int gai = ::getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints, &res);
    if (gai != 0) return fail("address '" + address + "': " + ::gai_strerror(gai));
    std::vector<UniqueFd> out;
    std::string last_error;
    for (auto* r = res; r; r = r->ai_next) {
        UniqueFd fd(::socket(r->ai_family, r->ai_socktype | SOCK_CLOEXEC, r->ai_protocol));
        if (!fd) {
            last_error = std::strerror(errno);
            continue;
        }
        int one = 1;
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (r->ai_family == AF_INET6) ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (::bind(fd.get(), r->ai_addr, r->ai_addrlen) != 0 || ::listen(fd.get(), 64) != 0) {
            char host[NI_MAXHOST] = "?";
            ::getnameinfo(r->ai_addr, r->ai_addrlen, host, sizeof host, nullptr, 0, NI_NUMERICHOST);
            last_error = std::string(host) + " port " + service + ": " + std::strerror(errno);
            continue;
        }
        out.push_back(std::move(fd));
    }
    ::freeaddrinfo(res);
    if (out.empty()) return fail("cannot listen on " + last_error);
    return out;
}

// Blocks the daemon's signals and returns a signalfd for them.
Result<UniqueFd> signal_fd(sigset_t& set) {
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&set, s);
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return fail(std::string("sigprocmask: ") + std::strerror(errno));
    UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd) return fail(std::string("signalfd: ") + std::strerror(errno));
    return fd;
}

// Forks into the background. The parent stays until the child reports (through
// `ready`) that it runs and its pid file exists, so `syncfsd && cat $pidfile` and
// systemd's Type=forking with PIDFile= never race; the parent's exit status is the child's
// startup result. Returns the write end of that pipe in the child.
Result<UniqueFd> detach() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + std::strerror(errno));
    UniqueFd rd(p[0]), wr(p[1]);
    pid_t pid = ::fork();
    if (pid < 0) return fail(std::string("fork: ") + std::strerror(errno));
    if (pid > 0) {
        wr.reset();
        char status = 1;
        ssize_t n;
        do {
            n = ::read(rd.get(), &status, 1);
        } while (n < 0 && errno == EINTR);
        ::_exit(n == 1 && status == 0 ? 0 : 1);
    }
    rd.reset();
    ::setsid();
    if (::chdir("/") != 0) return fail(std::string("chdir /: ") + std::strerror(errno));
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (null) {
        ::dup2(null.get(), 0);
        ::dup2(null.get(), 1);
        ::dup2(null.get(), 2);
    }
    return wr;
}

void log_warnings(const std::vector<std::string>& warnings) {
    for (const auto& w : warnings) spdlog::warn("{}", w);
}

class Daemon {
public:
    Daemon(const DaemonOptions& opt, DaemonConfig cfg)
        : opt_(opt), cfg_(std::make_shared<const DaemonConfig>(std::move(cfg))) {}

    int run() {
        const ParamSet& g = cfg_->global;
        const int port = opt_.port.value_or(static_cast<int>(g.number(P::port)));
        const std::string address = opt_.address.value_or(g.str(P::address));
        auto listeners = open_listeners(address, port);
        if (!listeners) {
            spdlog::error("{}", listeners.error().message);
            return 1;
        }
        listeners_ = std::move(*listeners);
        sigset_t set;
        auto sfd = signal_fd(set);
        if (!sfd) {
            spdlog::error("{}", sfd.error().message);
            return 1;
        }
        sigfd_ = std::move(*sfd);
        sigmask_ = set;
        UniqueFd ready;  // detached: tells the waiting parent that startup finished
        if (!opt_.no_detach) {
            auto d = detach();
            if (!d) {
                spdlog::error("{}", d.error().message);
                return 1;
            }
            ready = std::move(*d);
        }
        if (std::string pf = g.str(P::pid_file); !pf.empty()) {
            if (auto ok = pid_file_.create(pf); !ok) {
                spdlog::error("{}", ok.error().message);
                return 1;  // closing `ready` without a byte makes the parent exit 1
            }
        }
        if (ready) {
            const char ok = 0;
            (void)::write(ready.get(), &ok, 1);
            ready.reset();
        }
        spdlog::info("syncfsd starting, listening on {} port {} (config {})", address.empty() ? "*" : address, port,
                     cfg_->path);
        loop();
        shutdown();
        pid_file_.remove();
        spdlog::info("syncfsd stopped");
        return 0;
    }

private:
    void loop() {
        while (!stopping_) {
            std::vector<pollfd> fds;
            fds.push_back({sigfd_.get(), POLLIN, 0});
            for (const auto& l : listeners_) fds.push_back({l.get(), POLLIN, 0});
            int r = ::poll(fds.data(), fds.size(), -1);
            if (r < 0) {
                if (errno == EINTR) continue;
                spdlog::error("poll: {}", std::strerror(errno));
                return;
            }
            if (fds[0].revents & POLLIN) handle_signals();
            if (stopping_) return;
            for (std::size_t i = 1; i < fds.size(); ++i)
                if (fds[i].revents & POLLIN) accept_one(listeners_[i - 1].get());
        }
    }

    void handle_signals() {
        signalfd_siginfo si;
        while (::read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            switch (si.ssi_signo) {
            case SIGHUP: reload(); break;
            case SIGTERM:
            case SIGINT:
                spdlog::info("signal {}: shutting down", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                stopping_ = true;
                break;
            case SIGCHLD: reap(); break;
            default: break;
            }
        }
    }

    void reload() {
        std::vector<std::string> warnings;
        auto cfg = load_config(cfg_->path, warnings);
        if (!cfg) {
            spdlog::error("SIGHUP: keeping the previous configuration: {}", cfg.error().message);
            return;
        }
        log_warnings(warnings);
        cfg_ = std::make_shared<const DaemonConfig>(std::move(*cfg));
        spdlog::info("SIGHUP: configuration {} reloaded ({} modules)", cfg_->path, cfg_->modules.size());
    }

    void reap() {
        int status;
        pid_t pid;
        while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
            children_.erase(pid);
            // A connection process only ever exits; a signal means a defect (or an operator's
            // kill), and the operator must see it.
            if (WIFSIGNALED(status) && !aborting_) {
                spdlog::error("connection process {} killed by signal {} ({})", pid, WTERMSIG(status),
                              ::strsignal(WTERMSIG(status)));
            }
        }
    }

    void accept_one(int listener) {
        UniqueFd conn(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                spdlog::warn("accept: {}", std::strerror(errno));
            return;
        }
        if (children_.size() >= kMaxChildren) {
            spdlog::warn("{} connections running; closing a new one from {}", children_.size(), peer_address(conn.get()));
            return;
        }
        pid_t pid = ::fork();
        if (pid < 0) {
            spdlog::error("fork: {}", std::strerror(errno));
            return;
        }
        if (pid == 0) child(std::move(conn));  // never returns
        children_.insert(pid);
    }

    [[noreturn]] void child(UniqueFd conn) {
        listeners_.clear();
        sigfd_.reset();
        ::sigprocmask(SIG_UNBLOCK, &sigmask_, nullptr);
        keep_alive(conn.get());
        Peer peer;
        peer.address = peer_address(conn.get());
        ConnectionReport r = serve_connection(conn.get(), conn.get(), *cfg_, peer, ConnectionOptions{});
        conn.reset();
        spdlog::info("{}", format_report(r));
        spdlog::default_logger()->flush();
        ::_exit(r.ok ? 0 : 1);
    }

    void shutdown() {
        listeners_.clear();  // stop accepting: new clients get "connection refused"
        if (children_.empty()) return;
        spdlog::info("waiting up to {} s for {} running connection(s)", opt_.shutdown_grace_s, children_.size());
        wait_children(std::chrono::seconds(opt_.shutdown_grace_s));
        if (children_.empty()) return;
        spdlog::warn("aborting {} connection(s) still running", children_.size());
        aborting_ = true;
        for (pid_t pid : children_) ::kill(pid, SIGTERM);
        wait_children(std::chrono::seconds(5));
        for (pid_t pid : children_) ::kill(pid, SIGKILL);
        wait_children(std::chrono::seconds(5));
    }

    void wait_children(std::chrono::seconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!children_.empty()) {
            reap();
            if (children_.empty()) return;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return;
            pollfd p{sigfd_.get(), POLLIN, 0};
            ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 200)));
            signalfd_siginfo si;
            while (::read(sigfd_.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
            }
        }
    }

    const DaemonOptions& opt_;
    std::shared_ptr<const DaemonConfig> cfg_;
    std::vector<UniqueFd> listeners_;
    UniqueFd sigfd_;
    sigset_t sigmask_{};
    std::set<pid_t> children_;
    bool aborting_ = false;  // shutdown() is killing the connections still running
    PidFile pid_file_;
    bool stopping_ = false;
};

}  // namespace

int run_daemon(const DaemonOptions& options, DaemonConfig config) {
    ::signal(SIGPIPE, SIG_IGN);
    Daemon d(options, std::move(config));
    return d.run();
}

int run_inetd(const DaemonOptions& options, const DaemonConfig& config) {
    ::signal(SIGPIPE, SIG_IGN);
    Peer peer;
    peer.address = options.over_remote_shell ? remote_shell_peer_address() : peer_address(0);
    // Logged before the connection may chroot: the first syslog() call connects to
    // /dev/log, which is unreachable from inside the module's root.
    spdlog::info("inetd connection from {}", peer.address);
    if (!options.over_remote_shell) keep_alive(0);  // a systemd/xinetd socket
    ConnectionReport r = serve_connection(0, 1, config, peer, ConnectionOptions{});
    spdlog::info("{}", format_report(r));
    return r.ok ? 0 : 1;
}

}  // namespace sfs::server
