// Helpers for the native-protocol tests: a temp module dir, a server session on one end of a
// socketpair running in a thread, and a raw client that speaks frames with the protocol
// encoder (no MirrorLink), so the applier is tested on its own.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/unique_fd.h"
#include "protocol/native/messages.h"
#include "server/native/session.h"

namespace sfs::testing {

namespace pn = protocol::native;
namespace stdfs = std::filesystem;

// mkdtemp-made directory, removed recursively at the end.
class TempDir {
public:
    TempDir() {
        std::string templ = (stdfs::temp_directory_path() / "sfs-native-XXXXXX").string();
        char* p = ::mkdtemp(templ.data());
        EXPECT_NE(p, nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        stdfs::remove_all(path_, ec);
    }
    const stdfs::path& path() const { return path_; }

private:
    stdfs::path path_;
};

inline std::string read_file(const stdfs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
inline void write_file(const stdfs::path& p, std::string_view data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}
inline std::vector<std::uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

// A server session in a thread plus the client end of its socketpair.
class Served {
public:
    explicit Served(server::NativeModule module) : module_(std::move(module)) {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        client_.reset(sv[0]);
        server_end_.reset(sv[1]);
        result_ = std::async(std::launch::async, [this] {
            auto r = server::run_native_session(server_end_.get(), server_end_.get(), module_);
            ::shutdown(server_end_.get(), SHUT_RDWR);
            return r;
        });
    }
    ~Served() {
        ::shutdown(client_.get(), SHUT_RDWR);
        if (result_.valid()) result_.wait();
    }

    void send(const pn::Message& m) {
        auto frame = pn::encode(m);
        ASSERT_TRUE(frame.has_value()) << frame.error().message;
        send_raw(*frame);
    }
    void send_raw(const std::vector<std::uint8_t>& frame) {
        std::size_t done = 0;
        while (done < frame.size()) {
            ssize_t n = ::send(client_.get(), frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
            ASSERT_GT(n, 0) << std::strerror(errno);
            done += static_cast<std::size_t>(n);
        }
    }
    // Next message from the server, or nullopt on EOF/timeout (a test failure unless expected).
    std::optional<pn::Message> receive(int timeout_ms = 10000) {
        for (;;) {
            auto m = decoder_.next();
            if (!m) {
                ADD_FAILURE() << "bad frame from server: " << m.error().message;
                return std::nullopt;
            }
            if (*m) return std::move(**m);
            pollfd p{client_.get(), POLLIN, 0};
            if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
            std::uint8_t buf[65536];
            ssize_t n = ::read(client_.get(), buf, sizeof buf);
            if (n <= 0) return std::nullopt;
            decoder_.feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)));
        }
    }

    pn::HelloReply hello(const std::string& stream = "test-stream") {
        send(pn::Hello{pn::kHelloMagic, pn::kProtocolVersion, 0, stream});
        auto m = receive();
        EXPECT_TRUE(m.has_value());
        if (!m) return {};
        auto* r = std::get_if<pn::HelloReply>(&*m);
        EXPECT_NE(r, nullptr) << pn::to_string(pn::type_of(*m));
        return r ? *r : pn::HelloReply{};
    }

    // Sends a Barrier and collects every reply until its Done. Error acks land in errors().
    pn::Done barrier(bool durable = false) {
        std::uint64_t id = ++next_id_;
        send(pn::Barrier{id, durable});
        return wait_done(id);
    }
    pn::Done wait_done(std::uint64_t id) {
        for (;;) {
            auto m = receive(60000);  // generous: fsyncs on a loaded CI machine can be slow
            if (!m) {
                ADD_FAILURE() << "no Done for request " << id;
                return {};
            }
            if (auto* d = std::get_if<pn::Done>(&*m); d && d->id == id) return *d;
            collect(*m);
        }
    }
    void collect(const pn::Message& m) {
        if (auto* a = std::get_if<pn::Ack>(&m)) {
            if (a->flags & pn::kAckCumulative) {
                ++cumulative_acks_;
                EXPECT_GE(a->seq, acked_);
                acked_ = a->seq;
            } else {
                errors_.push_back(*a);
            }
        } else {
            other_.push_back(m);
        }
    }
    std::uint64_t next_id() { return ++next_id_; }

    const std::vector<pn::Ack>& errors() const { return errors_; }
    void clear_errors() { errors_.clear(); }
    std::vector<pn::Message>& other() { return other_; }
    std::uint64_t acked() const { return acked_; }
    std::uint64_t cumulative_acks() const { return cumulative_acks_; }

    // Closes the client side and returns the session's result.
    Result<server::NativeStats> finish() {
        ::shutdown(client_.get(), SHUT_WR);
        // Drain until EOF so the server never blocks on a full socket.
        while (receive(20000)) {}
        return result_.get();
    }
    int client_fd() const { return client_.get(); }

private:
    server::NativeModule module_;
    UniqueFd client_, server_end_;
    std::future<Result<server::NativeStats>> result_;
    pn::FrameDecoder decoder_;
    std::vector<pn::Ack> errors_;
    std::vector<pn::Message> other_;
    std::uint64_t acked_ = 0, cumulative_acks_ = 0, next_id_ = 0;
};

// A module dir and a state dir under one TempDir.
struct ModuleDirs {
    TempDir tmp;
    stdfs::path root = tmp.path() / "module";
    stdfs::path state = tmp.path() / "state";
    ModuleDirs() {
        stdfs::create_directories(root);
        stdfs::create_directories(state);
    }
    server::NativeModule module(bool read_only = false) const {
        server::NativeModule m;
        m.name = "test";
        m.path = root.string();
        m.state_dir = state.string();
        m.read_only = read_only;
        m.am_root = ::geteuid() == 0;
        m.peer = "socketpair";
        m.lock_timeout_ms = 2000;
        m.idle_timeout_s = 60;
        return m;
    }
};

}  // namespace sfs::testing
