#include "server/daemon/xfer_exec.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

namespace sfs::server {
namespace {

constexpr std::size_t kMaxHookOutput = 8 * 1024;
constexpr std::size_t kMaxHookArg = 64 * 1024;

// execve's argument and environment arrays over strings that outlive the call.
struct ExecArrays {
    std::vector<std::string> env_strings;
    std::vector<char*> envp;
    explicit ExecArrays(const HookEnv& env) {
        for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
        for (auto& s : env_strings) envp.push_back(s.data());
        envp.push_back(nullptr);
    }
};

// In a forked child: exec the shell. Never returns.
[[noreturn]] void exec_shell(const std::string& cmd, const HookEnv& env) {
    std::string shell = "/bin/sh";
    if (auto it = env.find("RSYNC_SHELL"); it != env.end() && !it->second.empty()) shell = it->second;
    ExecArrays a(env);
    // The daemon ignores SIGPIPE, and an ignored signal stays ignored across exec: a hook
    // writing to a reader that is gone would then spin on EPIPE instead of dying.
    ::signal(SIGPIPE, SIG_DFL);
    std::string c = "-c", command = cmd;
    char* argv[] = {shell.data(), c.data(), command.data(), nullptr};
    if (shell.find('/') != std::string::npos) ::execve(shell.c_str(), argv, a.envp.data());
    else ::execvpe(shell.c_str(), argv, a.envp.data());
    ::_exit(127);
}

int wait_for(pid_t pid) {
    int status = 0;
    for (;;) {
        pid_t r = ::waitpid(pid, &status, 0);
        if (r == pid) return status;
        if (r < 0 && errno == EINTR) continue;
        return -1;
    }
}

bool write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// What the forked child reads (read_arg) before running the command: the request, then the
// arguments (RSYNC_ARG0 = "rsyncd" first when `with_arg0`), each NUL-terminated, and an empty
// one to end them.
std::string request_message(const std::string& request, const std::vector<std::string>& args, bool with_arg0) {
    std::string msg = request + '\0';
    if (with_arg0) msg += std::string("rsyncd") + '\0';
    for (const auto& a : args)
        if (!a.empty()) msg += a + '\0';
    msg.push_back('\0');
    return msg;
}

// Reads one NUL-terminated string (bounded); nullopt at EOF/error or when too long.
std::optional<std::string> read_arg(int fd) {
    std::string s;
    char c;
    for (;;) {
        ssize_t r = ::read(fd, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return std::nullopt;
        if (c == '\0') return s;
        if (s.size() >= kMaxHookArg) return std::nullopt;
        s.push_back(c);
    }
}

// In a forked child: be SIGKILLed when `parent` ends. For helpers started as root before the
// connection drops privileges: the connection process can no longer kill them itself.
void die_with(pid_t parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // it ended before the prctl
}

}  // namespace

int run_shell(const std::string& cmd, const HookEnv& env, int stdin_fd, int stdout_fd, bool die_with_parent) {
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (die_with_parent) die_with(parent);
        if (stdin_fd >= 0) ::dup2(stdin_fd, STDIN_FILENO);
        if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
        exec_shell(cmd, env);
    }
    return wait_for(pid);
}

Result<PreXferExec> PreXferExec::start(const std::string& cmd, const HookEnv& env, std::vector<int> close_fds,
                                       bool own_group) {
    int args_pipe[2], out_pipe[2];
    if (::pipe2(args_pipe, O_CLOEXEC) < 0) return fail(std::string("pre-xfer exec preparation failed: ") + std::strerror(errno));
    UniqueFd args_r(args_pipe[0]), args_w(args_pipe[1]);
    if (::pipe2(out_pipe, O_CLOEXEC) < 0) return fail(std::string("pre-xfer exec preparation failed: ") + std::strerror(errno));
    UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
    spdlog::default_logger()->flush();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return fail(std::string("pre-xfer exec preparation failed: ") + std::strerror(errno));
    if (pid == 0) {
        if (own_group) {
            ::setpgid(0, 0);
            die_with(parent);  // a long-lived helper (name converter) never outlives its connection
        }
        for (int fd : close_fds)
            if (fd > STDERR_FILENO) ::close(fd);
        args_w.reset();
        out_r.reset();
        HookEnv e = env;
        auto request = read_arg(args_r.get());
        if (!request) ::_exit(1);
        e["RSYNC_REQUEST"] = *request;
        for (int j = 0;; ++j) {
            auto a = read_arg(args_r.get());
            if (!a) ::_exit(1);
            if (a->empty()) break;
            e["RSYNC_ARG" + std::to_string(j)] = *a;
            if (j > 4096) ::_exit(1);
        }
        ::dup2(args_r.get(), STDIN_FILENO);
        ::dup2(out_w.get(), STDOUT_FILENO);
        int status = run_shell(cmd, e, -1, -1, own_group);
        ::_exit(status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    }
    if (own_group) ::setpgid(pid, pid);   // also here, so stop() never races the child's own call
    PreXferExec p;
    p.pid_ = pid;
    p.own_group_ = own_group;
    p.args_w_ = std::move(args_w);
    p.output_r_ = std::move(out_r);
    return p;
}

PreXferExec::PreXferExec(PreXferExec&& o) noexcept
    : pid_(o.pid_), own_group_(o.own_group_), args_w_(std::move(o.args_w_)), output_r_(std::move(o.output_r_)),
      pending_(std::move(o.pending_)) {
    o.pid_ = -1;
}

PreXferExec::~PreXferExec() {
    if (pid_ <= 0) return;
    if (own_group_) {
        stop(2000);
        return;
    }
    // Never finished (the client went away): the child sees EOF on its pipe and exits 1.
    args_w_.reset();
    output_r_.reset();
    (void)wait_for(pid_);
}

std::optional<std::string> PreXferExec::finish(const std::string& request, const std::vector<std::string>& args,
                                               const std::string& input, bool with_arg0) {
    std::string msg = request_message(request, args, with_arg0) + input;
    (void)write_all(args_w_.get(), msg.data(), msg.size());   // a hook that ignores stdin may exit first
    args_w_.reset();
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(output_r_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (out.size() < kMaxHookOutput) out.append(buf, static_cast<std::size_t>(std::min<std::size_t>(n, kMaxHookOutput - out.size())));
    }
    output_r_.reset();
    int status = wait_for(pid_);
    pid_ = -1;
    if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
    // rsync: CR LF becomes LF in what the command printed.
    std::string clean;
    for (std::size_t i = 0; i < out.size(); ++i)
        if (!(out[i] == '\r' && i + 1 < out.size() && out[i + 1] == '\n')) clean.push_back(out[i]);
    return "pre-xfer exec returned failure (" + std::to_string(status) + ")" + (clean.empty() ? "" : ":") + "\n" + clean;
}

bool PreXferExec::begin(const std::string& request, const std::vector<std::string>& args) {
    const std::string msg = request_message(request, args, true);
    if (!args_w_ || !write_all(args_w_.get(), msg.data(), msg.size())) return false;
    // From now on writes are bounded by converse()'s deadline: a command that stops reading
    // must not block the transfer once the pipe is full.
    int fl = ::fcntl(args_w_.get(), F_GETFL);
    return fl >= 0 && ::fcntl(args_w_.get(), F_SETFL, fl | O_NONBLOCK) == 0;
}

Result<std::string> PreXferExec::converse(const std::string& line, int timeout_ms, std::size_t max_len) {
    if (!args_w_ || !output_r_) return fail("it is not running");
    std::string req = line + '\n';
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto left_ms = [&deadline] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    };
    // A dead reader makes write() fail with EPIPE (SIGPIPE is ignored by the daemon); one
    // that stopped reading runs into the deadline.
    for (std::size_t off = 0; off < req.size();) {
        ssize_t w = ::write(args_w_.get(), req.data() + off, req.size() - off);
        if (w > 0) {
            off += static_cast<std::size_t>(w);
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN) return fail(std::string("write failed: ") + std::strerror(errno));
        if (left_ms() <= 0) return fail("it does not read its requests");
        pollfd p{args_w_.get(), POLLOUT, 0};
        (void)::poll(&p, 1, static_cast<int>(left_ms()));
    }
    for (;;) {
        if (auto nl = pending_.find('\n'); nl != std::string::npos) {
            if (nl > max_len) return fail("reply longer than " + std::to_string(max_len) + " bytes");
            std::string reply = pending_.substr(0, nl);
            pending_.erase(0, nl + 1);
            if (!reply.empty() && reply.back() == '\r') reply.pop_back();
            return reply;
        }
        if (pending_.size() > max_len) return fail("reply longer than " + std::to_string(max_len) + " bytes");
        auto left = left_ms();
        if (left <= 0) return fail("no reply within " + std::to_string(timeout_ms / 1000) + " seconds");
        pollfd p{output_r_.get(), POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(left));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail(std::string("poll failed: ") + std::strerror(errno));
        if (r == 0) continue;
        char buf[1024];
        ssize_t n = ::read(output_r_.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(std::string("read failed: ") + std::strerror(errno));
        if (n == 0) return fail("it exited");
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

void PreXferExec::stop(int grace_ms) {
    if (pid_ <= 0) return;
    args_w_.reset();
    output_r_.reset();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_ || (r < 0 && errno != EINTR)) break;
        if (std::chrono::steady_clock::now() >= deadline) {
            // Never a blocking wait here: after the connection dropped root, a helper started
            // as root cannot be killed from here (EPERM). It dies with this process then
            // (PR_SET_PDEATHSIG); the connection must not hang on it meanwhile.
            if (::kill(own_group_ ? -pid_ : pid_, SIGKILL) != 0 && errno == EPERM)
                spdlog::warn("hook process {} cannot be stopped after the privilege drop; it ends with this connection",
                             pid_);
            const auto reap_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
            while (::waitpid(pid_, &status, WNOHANG) == 0 && std::chrono::steady_clock::now() < reap_until)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
}

Result<void> fork_post_xfer_exec(const std::string& cmd, const HookEnv& env, std::vector<int> close_fds) {
    spdlog::default_logger()->flush();
    pid_t pid = ::fork();
    if (pid < 0) return fail(std::string("fork failed: ") + std::strerror(errno));
    if (pid == 0) return {};
    for (int fd : close_fds) ::close(fd);
    int raw = wait_for(pid);
    int status = raw >= 0 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    HookEnv e = env;
    e["RSYNC_RAW_STATUS"] = std::to_string(raw);
    e["RSYNC_EXIT_STATUS"] = std::to_string(status);
    if (run_shell(cmd, e) < 0) status = -1;
    ::_exit(status < 0 ? 1 : status);
}

}  // namespace sfs::server
