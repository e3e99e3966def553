// Client side of the native protocol: URL, TCP connect, rsync-style text handshake and auth,
// Hello, then framed send/receive. See mirror_link.h for the threading contract.
#include "replicator/mirror_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "common/tcp_liveness.h"
#include "fmt/format.h"
#include "protocol/native/auth.h"
#include "spdlog/spdlog.h"

namespace sfs::repl {

namespace pn = protocol::native;

namespace {

constexpr std::size_t kMaxLine = 4096;
constexpr int kMaxMotdLines = 1000;

bool valid_module(std::string_view m) {
    if (m.empty() || m.size() > 255) return false;
    for (unsigned char c : m)
        if (c <= 0x20 || c == 0x7f || c == '/') return false;
    return true;
}

// Text-phase reader: lines from the socket with a timeout per read; whatever arrives after
// the last line read stays in `rest` for the frame decoder.
class LineReader {
public:
    LineReader(int fd, int timeout_ms, const std::string& peer) : fd_(fd), timeout_ms_(timeout_ms), peer_(peer) {}

    Result<std::string> line(std::uint64_t& counter) {
        for (;;) {
            if (auto nl = buf_.find('\n'); nl != std::string::npos) {
                std::string l = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                if (!l.empty() && l.back() == '\r') l.pop_back();
                return l;
            }
            if (buf_.size() > kMaxLine) return fail(fmt::format("mirror {}: handshake line longer than {} bytes", peer_, kMaxLine), EPROTO);
            pollfd p{fd_, POLLIN, 0};
            int n = ::poll(&p, 1, timeout_ms_);
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) return fail(fmt::format("mirror {}: no answer within {} ms during the handshake", peer_, timeout_ms_), ETIMEDOUT);
            char tmp[1024];
            ssize_t r = ::read(fd_, tmp, sizeof tmp);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return fail(fmt::format("mirror {}: read: {}", peer_, std::strerror(errno)), errno);
            if (r == 0) return fail(fmt::format("mirror {}: connection closed during the handshake", peer_), ECONNRESET);
            counter += static_cast<std::uint64_t>(r);
            buf_.append(tmp, static_cast<std::size_t>(r));
        }
    }
    const std::string& rest() const { return buf_; }

private:
    int fd_;
    int timeout_ms_;
    const std::string& peer_;
    std::string buf_;
};

Result<void> write_all(int fd, const void* data, std::size_t size, const std::string& peer) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::send(fd, p + done, size - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(fmt::format("mirror {}: write: {}", peer, std::strerror(errno)), errno);
        }
        done += static_cast<std::size_t>(n);
    }
    return {};
}

Result<UniqueFd> tcp_connect(const MirrorUrl& url, std::chrono::milliseconds timeout, std::chrono::seconds peer_timeout,
                             const std::string& peer) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    std::string port = std::to_string(url.port);
    if (int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return fail(fmt::format("mirror {}: cannot resolve host \"{}\": {}", peer, url.host, ::gai_strerror(rc)), EHOSTUNREACH);
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
    std::string last = "no address";
    int last_err = EHOSTUNREACH;
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol));
        if (!fd) {
            last_err = errno;
            last = std::strerror(errno);
            continue;
        }
        int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd.get(), POLLOUT, 0};
            int n;
            do {
                n = ::poll(&p, 1, static_cast<int>(timeout.count()));
            } while (n < 0 && errno == EINTR);
            if (n == 0) {
                last_err = ETIMEDOUT;
                last = fmt::format("connect timed out after {} ms", timeout.count());
                continue;
            }
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            rc = err == 0 ? 0 : -1;
            errno = err;
        }
        if (rc != 0) {
            last_err = errno;
            last = std::strerror(errno);
            continue;
        }
        int flags = ::fcntl(fd.get(), F_GETFL);
        ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
        int one = 1;
        ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // we batch frames ourselves
        set_tcp_liveness(fd.get(), peer_timeout);
        return fd;
    }
    return fail(fmt::format("mirror {}: cannot connect: {}", peer, last), last_err);
}

}  // namespace

std::string MirrorUrl::display() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return fmt::format("{}{}:{}/{}", user.empty() ? "" : user + "@", h, port, module);
}

Result<MirrorUrl> parse_mirror_url(std::string_view url) {
    constexpr std::string_view kScheme = "rsync://";
    auto bad = [&](std::string_view why) { return fail(fmt::format("mirror URL \"{}\": {}", url, why), EINVAL); };
    if (!url.starts_with(kScheme)) return bad("must start with rsync://");
    std::string_view rest = url.substr(kScheme.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) return bad("no /module");
    std::string_view authority = rest.substr(0, slash);
    std::string_view module = rest.substr(slash + 1);
    if (module.ends_with('/')) module.remove_suffix(1);
    MirrorUrl out;
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        out.user = std::string(authority.substr(0, at));
        authority = authority.substr(at + 1);
        if (out.user.empty()) return bad("empty user before '@'");
        for (unsigned char c : out.user)
            if (c <= 0x20 || c == 0x7f || c == ':') return bad("bad character in user");
    }
    std::string_view port;
    if (authority.starts_with('[')) {
        auto close = authority.find(']');
        if (close == std::string_view::npos) return bad("unclosed '[' in IPv6 host");
        out.host = std::string(authority.substr(1, close - 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return bad("junk after ']'");
            port = after.substr(1);
            if (port.empty()) return bad("empty port");
        }
    } else {
        auto colon = authority.find(':');
        out.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
            if (port.empty()) return bad("empty port");
        }
    }
    if (out.host.empty()) return bad("empty host");
    for (unsigned char c : out.host)
        if (c <= 0x20 || c == 0x7f || c == '/' || c == '@') return bad("bad character in host");
    if (!port.empty()) {
        unsigned v = 0;
        for (char c : port) {
            if (c < '0' || c > '9' || v > 65535) return bad("port must be a number 1-65535");
            v = v * 10 + static_cast<unsigned>(c - '0');
        }
        if (v == 0 || v > 65535) return bad("port must be a number 1-65535");
        out.port = static_cast<std::uint16_t>(v);
    }
    if (!valid_module(module)) return bad("module must be one non-empty path component");
    out.module = std::string(module);
    return out;
}

Result<std::string> read_password_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(fmt::format("password file \"{}\": {}", path, std::strerror(errno)), errno);
    UniqueFd file(fd);
    struct stat st{};
    if (::fstat(fd, &st) != 0) return fail(fmt::format("password file \"{}\": {}", path, std::strerror(errno)), errno);
    // The same refusals as rsync's client (authenticate.c getpassf).
    if (st.st_mode & 06)
        return fail(fmt::format("password file \"{}\" must not be other-accessible (chmod 600)", path), EACCES);
    if (::geteuid() == 0 && st.st_uid != 0)
        return fail(fmt::format("password file \"{}\" must be owned by root when running as root", path), EACCES);
    std::string data(1024, '\0');
    ssize_t n = ::read(fd, data.data(), data.size());
    if (n < 0) return fail(fmt::format("password file \"{}\": {}", path, std::strerror(errno)), errno);
    data.resize(static_cast<std::size_t>(n));
    if (auto nl = data.find_first_of("\r\n"); nl != std::string::npos) data.resize(nl);
    if (data.empty()) return fail(fmt::format("password file \"{}\": first line is empty", path), EINVAL);
    return data;
}

Result<std::unique_ptr<MirrorLink>> MirrorLink::connect(const std::string& url_text, const std::string& secrets_file,
                                                        const std::string& stream_id, const MirrorLinkOptions& options) {
    auto url = parse_mirror_url(url_text);
    if (!url) return std::unexpected(url.error());
    std::unique_ptr<MirrorLink> link(new MirrorLink());
    link->peer_ = url->display();
    const std::string& peer = link->peer_;
    std::optional<std::string> password;
    if (!secrets_file.empty()) {
        auto p = read_password_file(secrets_file);
        if (!p) return fail(fmt::format("mirror {}: {}", peer, p.error().message), p.error().code);
        password = std::move(*p);
    }
    auto fd = tcp_connect(*url, options.connect_timeout, options.peer_timeout, peer);
    if (!fd) return std::unexpected(fd.error());
    link->fd_ = std::move(*fd);
    const int sock = link->fd_.get();
    std::uint64_t received = 0;

    LineReader lines(sock, static_cast<int>(options.handshake_timeout.count()), peer);
    auto greeting = lines.line(received);
    if (!greeting) return std::unexpected(greeting.error());
    if (greeting->starts_with("@ERROR"))
        return fail(fmt::format("mirror {}: refused: {}", peer, *greeting), ECONNREFUSED);
    if (!greeting->starts_with("@RSYNCD: "))
        return fail(fmt::format("mirror {}: not an rsync daemon (greeting \"{}\")", peer, greeting->substr(0, 80)), EPROTO);
    std::string hello_line = fmt::format("SYNCFS {} {}\n", pn::kProtocolVersion, url->module);
    if (auto r = write_all(sock, hello_line.data(), hello_line.size(), peer); !r) return std::unexpected(r.error());
    std::uint64_t sent = hello_line.size();

    for (int motd = 0;; ++motd) {
        auto l = lines.line(received);
        if (!l) return std::unexpected(l.error());
        if (*l == "@RSYNCD: OK") break;
        if (l->starts_with("@ERROR")) {
            std::string why = l->substr(l->find(':') + 1);
            while (!why.empty() && why.front() == ' ') why.erase(0, 1);
            int code = why.find("auth") != std::string::npos ? EACCES : ECONNREFUSED;
            return fail(fmt::format("mirror {}: refused: {}", peer, why), code);
        }
        if (*l == "@RSYNCD: EXIT") return fail(fmt::format("mirror {}: the daemon closed the session", peer), ECONNREFUSED);
        if (l->starts_with("@RSYNCD: AUTHREQD ")) {
            std::string challenge = l->substr(18);
            if (challenge.empty() || challenge.size() > 256)
                return fail(fmt::format("mirror {}: malformed auth challenge", peer), EPROTO);
            if (!password)
                return fail(fmt::format("mirror {}: module {} requires a password (secrets=FILE)", peer, url->module), EACCES);
            std::string user = url->user;
            if (user.empty()) {
                const char* env = std::getenv("USER");
                user = env && *env ? env : "nobody";  // rsync's default
            }
            std::string reply = fmt::format("{} {}\n", user, pn::rsync_auth_response(*password, challenge));
            if (auto r = write_all(sock, reply.data(), reply.size(), peer); !r) return std::unexpected(r.error());
            sent += reply.size();
            continue;
        }
        if (motd >= kMaxMotdLines) return fail(fmt::format("mirror {}: too many lines before @RSYNCD: OK", peer), EPROTO);
        spdlog::info("mirror {}: {}", peer, *l);  // motd
    }
    const std::string& rest = lines.rest();
    link->decoder_.feed(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size()));
    link->bytes_received_ = received;
    link->bytes_sent_ = sent;

    if (auto r = link->send(pn::Hello{pn::kHelloMagic, pn::kProtocolVersion, 0, stream_id}); !r) return std::unexpected(r.error());
    auto reply = link->read_reply(options.handshake_timeout);
    if (!reply) return std::unexpected(reply.error());
    if (!*reply) return fail(fmt::format("mirror {}: no HelloReply within {} ms", peer, options.handshake_timeout.count()), ETIMEDOUT);
    auto* hr = std::get_if<pn::HelloReply>(&**reply);
    if (!hr)
        return fail(fmt::format("mirror {}: expected HelloReply, got {}", peer, pn::to_string(pn::type_of(**reply))), EPROTO);
    link->hello_ = *hr;
    return link;
}

MirrorLink::~MirrorLink() = default;

Result<void> MirrorLink::queue(const pn::Message& message) {
    std::lock_guard lock(write_mu_);
    if (auto r = pn::encode(message, out_); !r) return fail(fmt::format("mirror {}: {}", peer_, r.error().message), r.error().code);
    if (out_.size() >= (1u << 20)) return flush_locked();
    return {};
}

Result<void> MirrorLink::flush() {
    std::lock_guard lock(write_mu_);
    return flush_locked();
}

Result<void> MirrorLink::send(const pn::Message& message) {
    std::lock_guard lock(write_mu_);
    if (auto r = pn::encode(message, out_); !r) return fail(fmt::format("mirror {}: {}", peer_, r.error().message), r.error().code);
    return flush_locked();
}

Result<void> MirrorLink::flush_locked() {
    if (shut_) {
        out_.clear();
        return fail(fmt::format("mirror {}: connection shut down", peer_), ECONNABORTED);
    }
    auto r = write_all(fd_.get(), out_.data(), out_.size(), peer_);
    if (r) bytes_sent_ += out_.size();
    out_.clear();
    return r;
}

Result<bool> MirrorLink::fill(int timeout_ms) {
    pollfd p{fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return true;
        return fail(fmt::format("mirror {}: poll: {}", peer_, std::strerror(errno)), errno);
    }
    if (n == 0) return false;
    std::uint8_t buf[65536];
    ssize_t r = ::read(fd_.get(), buf, sizeof buf);
    if (r < 0) {
        if (errno == EINTR) return true;
        return fail(fmt::format("mirror {}: read: {}", peer_, std::strerror(errno)), errno);
    }
    if (r == 0) {
        if (shut_) return fail(fmt::format("mirror {}: connection shut down", peer_), ECONNABORTED);
        return fail(fmt::format("mirror {}: connection closed by the server", peer_), ECONNRESET);
    }
    bytes_received_ += static_cast<std::uint64_t>(r);
    decoder_.feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(r)));
    return true;
}

Result<std::optional<pn::Message>> MirrorLink::read_reply(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto m = decoder_.next();
        if (!m) return fail(fmt::format("mirror {}: bad frame: {}", peer_, m.error().message), EPROTO);
        if (*m) {
            if (auto* f = std::get_if<pn::Fatal>(&**m))
                return fail(fmt::format("mirror {}: server error: {}", peer_, f->message), f->err > 0 ? f->err : EPROTO);
            return std::move(*m);
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() < 0) return std::optional<pn::Message>();
        auto got = fill(static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
        if (!got) return std::unexpected(got.error());
        if (!*got) return std::optional<pn::Message>();
    }
}

Result<pn::Message> MirrorLink::receive() {
    for (;;) {
        auto m = read_reply(std::chrono::hours(24));
        if (!m) return std::unexpected(m.error());
        if (*m) return std::move(**m);
    }
}

void MirrorLink::shutdown() noexcept {
    shut_ = true;
    ::shutdown(fd_.get(), SHUT_RDWR);
}

MirrorConnector mirror_link_connector(MirrorLinkOptions options) {
    return [options](const std::string& url, const std::string& secrets_file,
                     const std::string& stream_id) -> Result<std::unique_ptr<MirrorConnection>> {
        auto link = MirrorLink::connect(url, secrets_file, stream_id, options);
        if (!link) return std::unexpected(link.error());
        return std::unique_ptr<MirrorConnection>(std::move(*link));
    };
}

}  // namespace sfs::repl
