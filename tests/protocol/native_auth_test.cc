// The native client's auth response must be exactly what the real rsync daemon expects:
// run `rsync --daemon` on 127.0.0.1 with an auth-protected module, answer its challenge
// with rsync_auth_response(), and check it says OK (and refuses a wrong password).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/loopback.h"
#include "common/unique_fd.h"
#include "protocol/native/auth.h"

namespace sfs::protocol::native {
namespace {

namespace stdfs = std::filesystem;

using testsupport::free_port;

class RsyncDaemon {
public:
    RsyncDaemon() {
        std::string templ = (stdfs::temp_directory_path() / "sfs-auth-XXXXXX").string();
        dir_ = ::mkdtemp(templ.data());
        stdfs::create_directory(dir_ / "mod");
        std::ofstream(dir_ / "secrets") << "alice:s3cret pass\n";
        ::chmod((dir_ / "secrets").c_str(), 0600);
        std::ofstream(dir_ / "rsyncd.conf") << "use chroot = no\npid file = " << (dir_ / "pid").string()
                                            << "\n[mod]\npath = " << (dir_ / "mod").string()
                                            << "\nauth users = alice\nsecrets file = " << (dir_ / "secrets").string()
                                            << "\nread only = yes\n";
        for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) {
            int port = free_port();
            pid_ = ::fork();
            if (pid_ == 0) {
                std::string conf = "--config=" + (dir_ / "rsyncd.conf").string();
                std::string p = "--port=" + std::to_string(port);
                ::execlp("rsync", "rsync", "--daemon", "--no-detach", "--address=127.0.0.1", p.c_str(), conf.c_str(),
                         static_cast<char*>(nullptr));
                ::_exit(127);
            }
            // Wait until it accepts connections.
            for (int i = 0; i < 100; ++i) {
                UniqueFd s(::socket(AF_INET, SOCK_STREAM, 0));
                sockaddr_in a{};
                a.sin_family = AF_INET;
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                a.sin_port = htons(static_cast<std::uint16_t>(port));
                if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
                    port_ = port;
                    break;
                }
                if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                    pid_ = -1;
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        }
    }
    ~RsyncDaemon() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
        std::error_code ec;
        stdfs::remove_all(dir_, ec);
    }
    int port() const { return port_; }

private:
    stdfs::path dir_;
    pid_t pid_ = -1;
    int port_ = 0;
};

// Speaks the rsync daemon text phase; returns the server's answer to our auth reply.
std::string try_auth(int port, const std::string& password) {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "connect failed";
    auto line = [&]() {
        std::string l;
        char c;
        pollfd p{s.get(), POLLIN, 0};
        while (::poll(&p, 1, 5000) == 1 && ::read(s.get(), &c, 1) == 1 && c != '\n') l += c;
        return l;
    };
    auto say = [&](const std::string& t) { (void)!::send(s.get(), t.data(), t.size(), MSG_NOSIGNAL); };
    std::string greeting = line();
    if (!greeting.starts_with("@RSYNCD: ")) return "bad greeting: " + greeting;
    say("@RSYNCD: 31.0 md5\n");  // offer md5 as the auth digest, as syncfsd's native side uses
    say("mod\n");
    std::string challenge_line = line();
    const std::string prefix = "@RSYNCD: AUTHREQD ";
    if (!challenge_line.starts_with(prefix)) return "no challenge: " + challenge_line;
    say("alice " + rsync_auth_response(password, challenge_line.substr(prefix.size())) + "\n");
    return line();
}

TEST(NativeAuth, ResponseIsAcceptedByTheRealRsyncDaemon) {
    RsyncDaemon daemon;
    ASSERT_NE(daemon.port(), 0) << "rsync --daemon did not start";
    EXPECT_EQ(try_auth(daemon.port(), "s3cret pass"), "@RSYNCD: OK");
    std::string refused = try_auth(daemon.port(), "wrong");
    EXPECT_TRUE(refused.starts_with("@ERROR")) << refused;
    EXPECT_NE(refused.find("auth failed"), std::string::npos) << refused;
}

}  // namespace
}  // namespace sfs::protocol::native
