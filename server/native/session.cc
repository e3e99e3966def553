// Mirror-side native session: reads frames, applies mutations strictly in order, answers
// queries, and acknowledges.
//
// Design note
//  - Pipelining: the client sends without waiting. We decode every complete frame in the
//    input buffer and apply it; only when no complete frame is left (we would block reading)
//    do we send one cumulative Ack for everything applied so far. A burst of N small ops thus
//    costs one Ack, and an Ack never waits for the client's next send. Failed ops get an
//    individual Ack at once (before the cumulative one that covers them).
//  - Replays: StreamState holds the stream's applied seq; it is rewritten after every
//    mutation, before any Ack can cover it. A mutation with seq <= applied is skipped.
//  - One content transfer at a time; its chunks must follow its Begin directly.
//  - Durability: DurableSet remembers what changed since the last durable point; a durable
//    Barrier fsyncs exactly that (or syncfs(2) when too much changed) and the state file.
//  - Output is buffered and written with blocking writes; the client must keep reading
//    replies while it sends (MirrorLink does).
#include "server/native/session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <random>

#include "fmt/format.h"
#include "protocol/native/messages.h"
#include "server/native/apply.h"
#include "server/native/content.h"
#include "server/native/listing.h"
#include "server/native/resolve.h"
#include "server/native/signature.h"
#include "server/native/stream_state.h"
#include "spdlog/spdlog.h"

namespace sfs::server {

namespace pn = protocol::native;
using namespace sfs::server::native;

namespace {

constexpr std::size_t kReadSize = 256 * 1024;
constexpr std::size_t kFlushThreshold = 1 << 20;
constexpr std::size_t kListBatchBytes = 1 << 20;

// SIGTERM in a connection process (NativeModule::own_process). The handler may only use
// async-signal-safe calls: it records the fact and shuts the connection down (a blocked
// read, poll or send then returns; pipes under --inetd cannot be shut down, there the
// EINTR check below ends the session).
std::atomic<int> g_term_fds[2] = {-1, -1};
volatile sig_atomic_t g_terminated = 0;

extern "C" void on_sigterm(int) {
    const int saved = errno;
    g_terminated = 1;
    for (auto& f : g_term_fds)
        if (int fd = f.load(std::memory_order_relaxed); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    errno = saved;
}

void end_on_sigterm(int in_fd, int out_fd) {
    g_term_fds[0].store(in_fd);
    g_term_fds[1].store(out_fd);
    struct sigaction sa{};
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocked calls return EINTR
    ::sigaction(SIGTERM, &sa, nullptr);
}

Error terminated_error() {
    return Error{"ended by SIGTERM (superseded by a newer connection of the stream, or syncfsd is stopping)",
                 ECONNABORTED};
}

// Marks an error that ends the session (I/O or protocol), as opposed to an op error.
struct SessionEnd {
    Error error;
};

class Session {
public:
    Session(int in_fd, int out_fd, const NativeModule& module)
        : in_(in_fd), out_(out_fd), m_(module), rng_(std::random_device{}()) {}

    Result<NativeStats> run() {
        auto r = run_inner();
        if (content_) content_->abort();
        if (!r) {
            spdlog::error("native session {} module {}: {}", m_.peer, m_.name, r.error().message);
            return std::unexpected(r.error());
        }
        spdlog::info("native session {} module {} stream {} ended: {} applied, {} failed, {} skipped, {} bytes in, {} out",
                     m_.peer, m_.name, stream_id_, stats_.ops_applied, stats_.ops_failed, stats_.ops_skipped,
                     stats_.bytes_in, stats_.bytes_out);
        return stats_;
    }

private:
    Result<void> run_inner() {
        if (auto r = open_dirs(); !r) return protocol_fail(r.error().message, r.error().code ? r.error().code : EIO);
        // Handshake: the first frame must be Hello.
        auto first = next_message();
        if (!first) return std::unexpected(first.error());
        if (!*first) return {};  // closed before Hello
        const auto* hello = std::get_if<pn::Hello>(&**first);
        if (!hello) return protocol_fail(fmt::format("expected Hello, got {}", pn::to_string(pn::type_of(**first))));
        if (hello->version < pn::kMinProtocolVersion)
            return protocol_fail(fmt::format("native protocol version {} is not supported (minimum {})", hello->version,
                                             pn::kMinProtocolVersion),
                                 EPROTONOSUPPORT);
        stream_id_ = hello->stream_id;
        if (m_.own_process) end_on_sigterm(in_, out_);
        auto state = StreamState::open(state_dir_.get(), stream_id_, m_.lock_timeout_ms,
                                       [] { return g_terminated != 0; });
        if (!state) return protocol_fail(state.error().message, state.error().code ? state.error().code : EIO);
        state_.emplace(std::move(*state));
        acked_ = state_->applied();
        pn::HelloReply reply;
        reply.version = std::min(hello->version, pn::kProtocolVersion);
        reply.caps = pn::kCapDelta | pn::kCapXattr | (m_.read_only ? pn::kCapReadOnly : 0u) |
                     (m_.am_root ? pn::kCapOwner : 0u) | (m_.munge_symlinks ? pn::kCapMungeSymlinks : 0u);
        reply.applied_seq = state_->applied();
        if (auto r = send(reply); !r) return r;
        if (auto r = flush(); !r) return r;
        spdlog::info("native session {} module {} stream {}: resuming after seq {}", m_.peer, m_.name, stream_id_,
                     state_->applied());

        for (;;) {
            auto msg = next_message();
            if (!msg) return std::unexpected(msg.error());
            if (!*msg) break;  // clean close
            if (auto r = handle(std::move(**msg)); !r) return r;
        }
        if (content_) {
            spdlog::warn("native session {} module {}: connection ended inside the transfer of \"{}\" (seq {}); temp file removed",
                         m_.peer, m_.name, content_path_, content_seq_);
        }
        return {};
    }

    Result<void> open_dirs() {
        if (m_.root_fd >= 0) {
            auto fd = open_beneath(m_.root_fd, "", O_PATH | O_DIRECTORY);
            if (!fd) return fail(fmt::format("module {}: cannot open its root: {}", m_.name, std::strerror(fd.error())), fd.error());
            root_ = std::move(*fd);
        } else {
            int fd = ::open(m_.path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0) return fail(fmt::format("module {}: cannot open path \"{}\": {}", m_.name, m_.path, std::strerror(errno)), errno);
            root_.reset(fd);
        }
        if (m_.state_dir_fd >= 0) {
            int fd = ::fcntl(m_.state_dir_fd, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) return fail(fmt::format("module {}: state dir fd: {}", m_.name, std::strerror(errno)), errno);
            state_dir_.reset(fd);
        } else {
            auto fd = open_state_dir(m_.state_dir.empty() ? "/var/lib/syncfsd/" + m_.name : m_.state_dir);
            if (!fd) return std::unexpected(fd.error());
            state_dir_ = std::move(*fd);
        }
        struct stat st{};
        if (::fstat(state_dir_.get(), &st) == 0) list_options_.skip = std::pair{st.st_dev, st.st_ino};
        list_options_.unmunge_symlinks = m_.munge_symlinks;
        ctx_.root = root_.get();
        ctx_.am_root = m_.am_root;
        ctx_.munge_symlinks = m_.munge_symlinks;
        ctx_.rng = &rng_;
        ctx_.touched = &touched_;
        return {};
    }

    // ---- input ----

    // The next frame; nullopt at a clean end of input. Sends the pending cumulative ack
    // before it would block.
    Result<std::optional<pn::Message>> next_message() {
        for (;;) {
            auto m = decoder_.next();
            if (!m) return protocol_fail(m.error().message);
            if (*m) return std::move(*m);
            if (auto r = send_cumulative_ack(); !r) return std::unexpected(r.error());
            if (auto r = flush(); !r) return std::unexpected(r.error());
            if (m_.idle_timeout_s > 0) {
                pollfd p{in_, POLLIN, 0};
                int n = ::poll(&p, 1, m_.idle_timeout_s * 1000);
                if (g_terminated) return std::unexpected(terminated_error());
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) return fail(fmt::format("poll on connection from {}: {}", m_.peer, std::strerror(errno)), errno);
                if (n == 0) {
                    // Not an error: the client reconnects when it has something to send. This is
                    // what frees the stream lock of a half-open connection.
                    spdlog::info("native session {} module {}: idle for {} s, closing", m_.peer, m_.name, m_.idle_timeout_s);
                    if (decoder_.buffered() > 0)
                        return fail(fmt::format("{} stalled inside a frame for {} s", m_.peer, m_.idle_timeout_s), ETIMEDOUT);
                    return std::optional<pn::Message>();
                }
            }
            read_buf_.resize(kReadSize);
            std::uint8_t* buf = read_buf_.data();
            ssize_t n = ::read(in_, buf, read_buf_.size());
            if (g_terminated) return std::unexpected(terminated_error());
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                return fail(fmt::format("read from {}: {}", m_.peer, std::strerror(errno)), errno);
            }
            if (n == 0) {
                if (decoder_.buffered() > 0)
                    return fail(fmt::format("{} closed the connection inside a frame", m_.peer), EPROTO);
                return std::optional<pn::Message>();
            }
            stats_.bytes_in += static_cast<std::uint64_t>(n);
            decoder_.feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)));
        }
    }

    // ---- output ----

    Result<void> send(const pn::Message& m) {
        if (auto r = pn::encode(m, out_buf_); !r) return fail(fmt::format("internal: {}", r.error().message), EINVAL);
        if (out_buf_.size() >= kFlushThreshold) return flush();
        return {};
    }

    // Writes everything buffered. A client that stops reading is given the module's `timeout`
    // (else idle_timeout_s) without any progress, then the session ends: it must not hold the
    // stream lock forever.
    Result<void> flush() {
        std::size_t done = 0;
        auto last_progress = std::chrono::steady_clock::now();
        while (done < out_buf_.size()) {
            ssize_t n = ::send(out_, out_buf_.data() + done, out_buf_.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == ENOTSOCK) n = ::write(out_, out_buf_.data() + done, out_buf_.size() - done);
            if (g_terminated) {
                out_buf_.clear();
                return std::unexpected(terminated_error());
            }
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    const int limit = m_.io_timeout_s > 0 ? m_.io_timeout_s : m_.idle_timeout_s;
                    auto stalled = std::chrono::steady_clock::now() - last_progress;
                    if (limit > 0 && stalled >= std::chrono::seconds(limit)) {
                        out_buf_.clear();
                        return fail(fmt::format("write to {}: the client read nothing for {} s", m_.peer, limit),
                                    ETIMEDOUT);
                    }
                    pollfd p{out_, POLLOUT, 0};
                    ::poll(&p, 1, 1000);
                    continue;
                }
                out_buf_.clear();
                return fail(fmt::format("write to {}: {}", m_.peer, std::strerror(errno)), errno);
            }
            last_progress = std::chrono::steady_clock::now();
            done += static_cast<std::size_t>(n);
            stats_.bytes_out += static_cast<std::uint64_t>(n);
        }
        out_buf_.clear();
        return {};
    }

    Result<void> send_cumulative_ack() {
        if (!state_ || state_->applied() <= acked_) return {};
        acked_ = state_->applied();
        return send(pn::Ack{acked_, pn::kAckCumulative, 0, ""});
    }

    std::unexpected<Error> protocol_fail(std::string reason, int code = EPROTO) {
        std::string message = fmt::format("protocol error from {}: {}", m_.peer, reason);
        out_buf_.clear();
        if (message.size() > pn::kMaxMessage) message.resize(pn::kMaxMessage);
        if (pn::encode(pn::Fatal{code, reason.substr(0, pn::kMaxMessage)}, out_buf_)) (void)flush();
        return std::unexpected(Error{message, code});
    }

    // ---- dispatch ----

    Result<void> handle(pn::Message msg) {
        const pn::MsgType type = pn::type_of(msg);
        if (content_open_) {
            auto seq = pn::seq_of(msg);
            bool part = type == pn::MsgType::ContentChunk || type == pn::MsgType::ContentCommit || type == pn::MsgType::ContentAbort;
            if (!part || *seq != content_seq_)
                return protocol_fail(fmt::format("{} inside the content transfer of seq {}", pn::to_string(type), content_seq_));
        } else if (type == pn::MsgType::ContentChunk || type == pn::MsgType::ContentCommit || type == pn::MsgType::ContentAbort) {
            return protocol_fail(fmt::format("{} without ContentBegin", pn::to_string(type)));
        }
        return std::visit([this](auto& m) { return on(m); }, msg);
    }

    // Completes a mutation: error ack if it failed, then the applied seq is recorded.
    Result<void> finish(std::uint64_t seq, const Result<void>& outcome) {
        if (outcome) {
            ++stats_.ops_applied;
        } else {
            ++stats_.ops_failed;
            spdlog::warn("native {} module {} seq {}: {}", m_.peer, m_.name, seq, outcome.error().message);
            int err = outcome.error().code > 0 ? outcome.error().code : EIO;
            std::string text = outcome.error().message.substr(0, pn::kMaxMessage);
            if (auto r = send(pn::Ack{seq, 0, err, text}); !r) return r;
        }
        if (auto r = state_->set_applied(seq); !r)
            spdlog::error("native {} module {}: cannot record applied seq {}: {} (a reconnect will replay it)", m_.peer,
                          m_.name, seq, std::strerror(r.error()));
        return {};
    }

    // Common path of the simple mutations.
    template <class Op>
    Result<void> mutate(const Op& op) {
        if (op.seq <= state_->applied()) {
            ++stats_.ops_skipped;
            return {};
        }
        if (m_.read_only) return finish(op.seq, fail(fmt::format("module {} is read only", m_.name), EROFS));
        return finish(op.seq, apply(ctx_, op));
    }

    Result<void> on(pn::Mkdir& m) { return mutate(m); }
    Result<void> on(pn::Create& m) { return mutate(m); }
    Result<void> on(pn::Mknod& m) { return mutate(m); }
    Result<void> on(pn::Symlink& m) { return mutate(m); }
    Result<void> on(pn::Link& m) { return mutate(m); }
    Result<void> on(pn::Rename& m) { return mutate(m); }
    Result<void> on(pn::Unlink& m) { return mutate(m); }
    Result<void> on(pn::Rmdir& m) { return mutate(m); }
    Result<void> on(pn::Setattr& m) { return mutate(m); }
    Result<void> on(pn::Setxattr& m) { return mutate(m); }
    Result<void> on(pn::Removexattr& m) { return mutate(m); }
    Result<void> on(pn::WriteRange& m) { return mutate(m); }

    Result<void> on(pn::ContentBegin& m) {
        content_open_ = true;
        content_seq_ = m.seq;
        content_path_ = m.path;
        content_error_.reset();
        content_.reset();
        if (m.seq <= state_->applied()) {
            content_skip_ = true;  // replay: swallow its chunks
            return {};
        }
        content_skip_ = false;
        if (m_.read_only) {
            content_error_ = Error{fmt::format("module {} is read only", m_.name), EROFS};
            return {};
        }
        auto t = ContentTransfer::begin(ctx_, m);
        if (!t) content_error_ = t.error();
        else content_.emplace(std::move(*t));
        return {};
    }
    Result<void> on(pn::ContentChunk& m) {
        if (content_skip_ || content_error_) return {};
        if (auto r = content_->chunk(m.data); !r) {
            content_error_ = r.error();  // e.g. ENOSPC: the rest of the chunks are dropped
            content_->abort();
            content_.reset();
        }
        return {};
    }
    Result<void> on(pn::ContentCommit& m) {
        content_open_ = false;
        if (content_skip_) {
            ++stats_.ops_skipped;
            return {};
        }
        Result<void> outcome = content_error_ ? Result<void>(std::unexpected(*content_error_)) : content_->commit(ctx_, m);
        content_.reset();
        content_error_.reset();
        return finish(m.seq, outcome);
    }
    Result<void> on(pn::ContentAbort& m) {
        content_open_ = false;
        if (content_) content_->abort();
        content_.reset();
        content_error_.reset();
        if (content_skip_) {
            ++stats_.ops_skipped;
            return {};
        }
        return finish(m.seq, {});
    }

    Result<void> done(std::uint64_t id, const Result<void>& outcome, std::uint32_t flags = 0, std::uint64_t size = 0,
                      pn::Timestamp mtime = {}) {
        pn::Done d;
        d.id = id;
        d.applied_seq = state_->applied();
        d.size = size;
        d.mtime = mtime;
        if (outcome) {
            d.flags = flags;
        } else {
            d.err = outcome.error().code > 0 ? outcome.error().code : EIO;
            d.message = outcome.error().message.substr(0, pn::kMaxMessage);
            // A query about a path the mirror lacks is an answer, not a problem: the
            // replicator asks that for every new file made outside the mount (docs/watcher.md).
            if (d.err == ENOENT || d.err == ENOTDIR) {
                spdlog::debug("native {} module {}: {}", m_.peer, m_.name, outcome.error().message);
            } else {
                spdlog::warn("native {} module {}: {}", m_.peer, m_.name, outcome.error().message);
            }
        }
        if (auto r = send_cumulative_ack(); !r) return r;
        return send(d);
    }

    Result<void> on(pn::SignatureRequest& m) {
        if (auto r = send_cumulative_ack(); !r) return r;
        bool io_failed = false;
        // Each chunk is written at once (make_signature paces them): a write is how a long
        // computation learns that its client has gone.
        auto info = make_signature(root_.get(), m, [&](std::span<const std::uint8_t> data) -> Result<void> {
            auto r = send(pn::SignatureChunk{m.id, {data.begin(), data.end()}});
            if (r) r = flush();
            if (!r) io_failed = true;
            return r;
        });
        if (io_failed) return std::unexpected(info.error());
        if (!info) return done(m.id, std::unexpected(info.error()));
        return done(m.id, {}, 0, info->size, info->mtime);
    }

    Result<void> on(pn::ListRequest& m) {
        if (auto r = send_cumulative_ack(); !r) return r;
        bool io_failed = false;
        pn::ListChunk batch{m.id, {}};
        std::size_t batch_bytes = 0;
        auto flush_batch = [&]() -> Result<void> {
            if (batch.entries.empty()) return {};
            auto r = send(batch);
            batch.entries.clear();
            batch_bytes = 0;
            if (!r) io_failed = true;
            return r;
        };
        auto outcome = list_tree(root_.get(), m, list_options_, [&](pn::ListEntry&& e) -> Result<void> {
            batch_bytes += 80 + e.path.size() + e.target.size();
            batch.entries.push_back(std::move(e));
            if (batch.entries.size() >= pn::kMaxListEntries || batch_bytes >= kListBatchBytes) return flush_batch();
            return {};
        });
        if (io_failed) return std::unexpected(outcome.error());
        if (!outcome) return done(m.id, std::unexpected(outcome.error()));
        if (auto r = flush_batch(); !r) return r;
        if (!outcome->incomplete.empty())
            return done(m.id, fail(fmt::format("listing incomplete: {}", outcome->incomplete), EIO));
        return done(m.id, {});
    }

    Result<void> on(pn::Fsync& m) {
        auto fd = open_beneath(root_.get(), m.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (!fd) return done(m.id, op_error("fsync", m.path, fd.error()));
        if (::fsync(fd->get()) != 0) return done(m.id, op_error("fsync", m.path, errno));
        if (!m.path.empty()) {
            auto slash = m.path.rfind('/');
            std::string parent = slash == std::string::npos ? std::string() : m.path.substr(0, slash);
            auto dfd = open_beneath(root_.get(), parent, O_RDONLY | O_DIRECTORY);
            if (!dfd || ::fsync(dfd->get()) != 0) return done(m.id, op_error("fsync (directory)", parent, dfd ? errno : dfd.error()));
        }
        if (auto r = state_->sync(); !r) return done(m.id, op_error("fsync (stream state)", stream_id_, r.error()));
        return done(m.id, {}, pn::kDoneDurable);
    }

    Result<void> on(pn::Barrier& m) {
        if (!m.durable) return done(m.id, {});
        return done(m.id, make_durable(), pn::kDoneDurable);
    }

    Result<void> make_durable() {
        if (touched_.overflowed()) {
            auto fd = open_beneath(root_.get(), "", O_RDONLY | O_DIRECTORY);
            if (!fd) return op_error("syncfs", ".", fd.error());
            if (::syncfs(fd->get()) != 0) return op_error("syncfs", ".", errno);
        } else {
            for (const std::string& path : touched_.paths()) {
                auto fd = open_beneath(root_.get(), path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
                if (!fd) {
                    // Gone again (a later unlink/rename) or a symlink/socket: nothing to sync.
                    if (fd.error() == ENOENT || fd.error() == ELOOP || fd.error() == ENXIO || fd.error() == ENOTDIR) continue;
                    return op_error("fsync", path, fd.error());
                }
                if (::fsync(fd->get()) != 0 && errno != EINVAL) return op_error("fsync", path, errno);
            }
        }
        if (auto r = state_->sync(); !r) return op_error("fsync (stream state)", stream_id_, r.error());
        touched_.clear();
        return {};
    }

    // Messages only the server sends, or a second Hello.
    template <class M>
    Result<void> on(M&) {
        return protocol_fail(fmt::format("unexpected {} from the client", pn::to_string(pn::type_of(pn::Message(M{})))));
    }

    int in_, out_;
    const NativeModule& m_;
    std::mt19937_64 rng_;
    UniqueFd root_, state_dir_;
    ApplyContext ctx_;
    DurableSet touched_;
    ListOptions list_options_;
    std::optional<StreamState> state_;
    std::string stream_id_;
    std::uint64_t acked_ = 0;
    pn::FrameDecoder decoder_;
    std::vector<std::uint8_t> out_buf_;
    std::vector<std::uint8_t> read_buf_;
    NativeStats stats_;
    // The open content transfer, if any.
    bool content_open_ = false;
    bool content_skip_ = false;
    std::uint64_t content_seq_ = 0;
    std::string content_path_;
    std::optional<ContentTransfer> content_;
    std::optional<Error> content_error_;
};

}  // namespace

Result<NativeStats> run_native_session(int in_fd, int out_fd, const NativeModule& module) {
    Session session(in_fd, out_fd, module);
    return session.run();
}

}  // namespace sfs::server
