#include "server/daemon/connection.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <chrono>
#include <functional>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/unique_fd.h"
#include "server/daemon/args.h"
#include "server/daemon/auth.h"
#include "server/daemon/conn_limit.h"
#include "server/daemon/line_io.h"
#include "server/daemon/module_filter.h"
#include "server/daemon/name_converter.h"
#include "server/daemon/privileges.h"
#include "server/daemon/refusal.h"
#include "server/daemon/var_expand.h"
#include "server/daemon/xfer_exec.h"
#include "server/native/session.h"
#include "server/native/stream_state.h"
#include "server/rsync/session.h"

namespace sfs::server {
namespace {

// Oldest rsync protocol the transfer is offered to; older clients are refused cleanly.
constexpr int kMinProtocol = 27;
constexpr std::size_t kMaxLine = 4096;
constexpr std::size_t kMaxMotd = 64 * 1024;
constexpr long kMaxEarlyInput = 5120;   // rsync BIGPATHBUFLEN

struct ClientGreeting {
    int version = 0;
    int sub = -1;                            // -1: the client sent no ".sub"
    std::optional<std::string> digest_list;  // text after the version, if any
};

// Parses "@RSYNCD: <ver>[.<sub>][ <digests>]" (rsync exchange_protocols()).
std::optional<ClientGreeting> parse_greeting(std::string_view line) {
    constexpr std::string_view prefix = "@RSYNCD: ";
    if (!line.starts_with(prefix)) return std::nullopt;
    line.remove_prefix(prefix.size());
    ClientGreeting g;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), g.version);
    if (ec != std::errc() || g.version <= 0 || g.version > 1000) return std::nullopt;
    std::string_view rest(p, static_cast<std::size_t>(line.data() + line.size() - p));
    if (rest.starts_with(".")) {
        rest.remove_prefix(1);
        auto [q, ec2] = std::from_chars(rest.data(), rest.data() + rest.size(), g.sub);
        if (ec2 != std::errc() || g.sub < 0) return std::nullopt;
        rest = std::string_view(q, static_cast<std::size_t>(rest.data() + rest.size() - q));
    }
    if (rest.starts_with(" ")) g.digest_list = std::string(rest.substr(1));
    else if (!rest.empty()) return std::nullopt;
    return g;
}

// Whether `inner` is `outer` or below it, after resolving the symlinks of the parts that exist
// (so /srv/web/../state and a symlinked state dir are judged by where they really are). When
// either cannot be resolved (EACCES, ELOOP) it answers yes: the caller refuses rather than
// guess.
bool is_beneath(const std::string& outer, const std::string& inner) {
    std::error_code ec1, ec2;
    auto o = std::filesystem::weakly_canonical(outer, ec1);
    auto i = std::filesystem::weakly_canonical(inner, ec2);
    if (ec1 || ec2) return true;
    auto [oe, ie] = std::mismatch(o.begin(), o.end(), i.begin(), i.end());
    return oe == o.end() || (std::next(oe) == o.end() && oe->empty());  // "dir/" ends in an empty part
}

// Client-supplied text as it may appear in messages and logs: control bytes become '?',
// so a module or user name cannot forge log lines or terminal escapes.
std::string printable(std::string_view s, std::size_t max = 256) {
    std::string out;
    for (char c : s.substr(0, max)) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
    return out;
}

// The negotiated version as rsync computes it (our subprotocol is 0).
int negotiate(int ours, const ClientGreeting& g) {
    const int sub = g.sub < 0 ? 0 : g.sub;
    if (ours > g.version) return sub ? g.version - 1 : g.version;
    if (ours == g.version && sub != 0) return ours - 1;
    return ours;
}

class Connection {
public:
    Connection(int in_fd, int out_fd, const DaemonConfig& cfg, Peer peer, const ConnectionOptions& opt)
        : in_fd_(in_fd), out_fd_(out_fd), cfg_(cfg), peer_(std::move(peer)), opt_(opt),
          ch_(in_fd, out_fd, std::chrono::steady_clock::now() + std::chrono::seconds(opt.handshake_timeout_s)) {}

    ConnectionReport run() {
        // `reverse lookup = yes` in the global section: name every client in logs, as rsyncd.
        if (cfg_.global.flag(P::reverse_lookup)) resolve_peer_name(peer_);
        std::string greeting = "@RSYNCD: " + std::to_string(our_version()) + ".0 " + std::string(kAuthDigestList) + "\n";
        if (!ch_.write(greeting)) return finish(false, "client went away before the greeting");
        auto first = ch_.read_line(kMaxLine);
        if (!first) return finish(false, "no client greeting: " + first.error().message);
        dispatch_first_line(*first);
        return finish(ok_, result_);
    }

private:
    int our_version() const { return std::max(kMinProtocol, max_protocol_version()); }

    // THE protocol dispatch point: the client's first line chooses the protocol.
    void dispatch_first_line(const std::string& line) {
        if (line.starts_with("@RSYNCD:")) {
            report_.protocol = "rsync";
            serve_rsync(line);
            return;
        }
        if (line.starts_with("SYNCFS ")) {
            report_.protocol = "native";
            serve_native(line);
            return;
        }
        refuse("protocol startup error", "unrecognized first line from client");
    }

    void serve_rsync(const std::string& line) {
        auto g = parse_greeting(line);
        if (!g) return refuse("protocol startup error", "bad greeting '" + printable(line, 80) + "'");
        if (g->sub < 0 && g->version >= 30)
            return refuse("your client omitted the subprotocol value: " + printable(line), "greeting without subprotocol");
        if (!g->digest_list && g->version > 31)
            return refuse("your client omitted the digest name list: " + printable(line), "greeting without digest list");
        protocol_ = negotiate(our_version(), *g);
        if (protocol_ < kMinProtocol)
            return refuse("protocol version " + std::to_string(protocol_) + " is too old; syncfsd needs " +
                              std::to_string(kMinProtocol) + " or newer",
                          "client protocol " + std::to_string(g->version) + " too old");
        digest_list_ = g->digest_list;

        send_motd();

        auto mod = ch_.read_line(kMaxLine);
        if (!mod) return fail_quietly("no module line: " + mod.error().message);
        // --early-input: "#early_input=N", N bytes for the module's `early exec`, then the
        // module line (rsync clientserver.c; N at most BIGPATHBUFLEN).
        if (mod->starts_with("#early_input=")) {
            long n = 0;
            std::string_view v = std::string_view(*mod).substr(13);
            auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || ptr != v.data() + v.size() || n <= 0 || n > kMaxEarlyInput)
                return refuse("invalid early_input length", "bad early_input line '" + printable(*mod, 80) + "'");
            auto data = ch_.read_bytes(static_cast<std::size_t>(n));
            if (!data) return fail_quietly("no early input: " + data.error().message);
            early_input_ = std::move(*data);
            mod = ch_.read_line(kMaxLine);
            if (!mod) return fail_quietly("no module line: " + mod.error().message);
        }
        if (mod->empty() || *mod == "#list") return send_listing();
        if (mod->front() == '#') return refuse("Unknown command '" + printable(*mod) + "'", "unknown command");
        const ModuleConfig* m = cfg_.find(*mod);
        if (!m) return refuse("Unknown module '" + printable(*mod) + "'", "unknown module '" + printable(*mod) + "'");
        report_.module = m->name;
        serve_module(*m);
    }

    void send_motd() {
        std::string path = cfg_.global.str(P::motd_file);
        if (path.empty()) return;
        // Like rsync's open_no_attacker_symlinks(): a symlink is followed only when root or
        // we own it, so a planted link cannot send another file's bytes to every client.
        int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
        struct stat lst {};
        if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode) && (lst.st_uid == 0 || lst.st_uid == ::geteuid()))
            flags &= ~O_NOFOLLOW;
        UniqueFd fd(::open(path.c_str(), flags));
        if (!fd) {
            spdlog::warn("motd file {}: {}", path, std::strerror(errno));
            return;
        }
        std::string text;
        char buf[4096];
        ssize_t n;
        while (text.size() < kMaxMotd && (n = ::read(fd.get(), buf, sizeof buf)) > 0)
            text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxMotd) text.resize(kMaxMotd);
        text.push_back('\n');
        (void)ch_.write(text);
    }

    void send_listing() {
        report_.request = "list";
        std::string out;
        for (const auto& m : cfg_.modules) {
            if (!m.params.flag(P::list)) continue;
            std::string name = m.name;
            if (name.size() < 15) name.resize(15, ' ');
            out += name + "\t" + m.params.str(P::comment) + "\n";
        }
        out += "@RSYNCD: EXIT\n";
        if (auto w = ch_.write(out); !w) return fail_quietly(w.error().message);
        ok_ = true;
        result_ = "ok";
    }

    // What admission to a module yields: the auth rule's read-only override and the entered
    // module environment (chroot, uid/gid already applied).
    struct Admitted {
        std::optional<bool> user_read_only;
        ModuleEnv env;
    };

    // The access control shared by rsync and native clients (rsync clientserver.c
    // rsync_module() up to the OK): hosts allow/deny, max connections, auth, entering the
    // module. `before_enter` runs just before chroot/setuid (the native side opens its state
    // dir there). nullopt: the client has been refused.
    // before_enter(module path, %VAR%s expanded) runs before chroot and setuid; false: refused.
    std::optional<Admitted> admit(const ModuleConfig& m,
                                  const std::function<bool(const std::string&)>& before_enter = {}) {
        const ParamSet& p = m.params;
        if (p.flag(P::reverse_lookup)) resolve_peer_name(peer_);
        if (!host_allowed(p.str(P::hosts_allow), p.str(P::hosts_deny), peer_, p.flag(P::forward_lookup))) {
            if (!p.flag(P::list))  // do not reveal an unlisted module
                refuse("Unknown module '" + m.name + "'", "host denied (unlisted module)");
            else
                refuse("access denied to " + m.name + " from " + peer_.display_name() + " (" + peer_.address + ")",
                       "host denied");
            return std::nullopt;
        }

        auto slot = claim_connection_slot(p.str(P::lock_file), m.name, static_cast<int>(p.number(P::max_connections)));
        if (!slot) {
            refuse("failed to open lock file", slot.error().message);
            return std::nullopt;
        }
        if (!*slot) {
            refuse("max connections (" + std::to_string(p.number(P::max_connections)) + ") reached -- try again later",
                   "max connections reached");
            return std::nullopt;
        }
        slot_ = std::move(**slot);

        std::optional<bool> user_read_only;
        if (!p.str(P::auth_users).empty()) {
            auto auth = authenticate(m);
            if (!auth) return std::nullopt;
            user_read_only = auth->read_only;
        }

        // %VAR% references (rsync expand_vars): the hook environment as rsync sets it up
        // by now, and `path` expanded from it (verbatim, no shell quoting).
        hook_env_ = process_environment();
        hook_env_["RSYNC_MODULE_NAME"] = m.name;
        hook_env_["RSYNC_HOST_NAME"] = peer_.display_name();
        hook_env_["RSYNC_HOST_ADDR"] = peer_.address;
        hook_env_["RSYNC_USER_NAME"] = report_.user;
        hook_env_["RSYNC_PID"] = std::to_string(::getpid());
        ModuleConfig expanded = m;
        if (auto raw_path = p.str(P::path); raw_path.find('%') != std::string::npos) {
            auto x = expand_vars(raw_path, hook_env_, false);
            if (!x || x->empty() || x->front() != '/') {
                refuse("chdir failed", "module path '" + raw_path + "' does not expand to an absolute path");
                return std::nullopt;
            }
            expanded.params.set(P::path, *x);
        }
        {
            std::string full = expanded.params.str(P::path);
            for (std::size_t at; (at = full.find("/./")) != std::string::npos;) full.erase(at, 2);
            hook_env_["RSYNC_MODULE_PATH"] = full;
        }
        if (before_enter && !before_enter(expanded.params.str(P::path))) return std::nullopt;
        auto env = enter_module(expanded);
        if (!env) {
            refuse(env.error().client, env.error().log);
            return std::nullopt;
        }
        return Admitted{user_read_only, std::move(*env)};
    }

    // `pre-xfer exec` / `post-xfer exec` (xfer_exec.h): expanded for the shell, then the
    // post-xfer waiter and the pre-xfer child are forked here, before the module is entered,
    // so both run as the daemon's user outside any chroot. False: the client was refused.
    bool start_hooks(const ModuleConfig& m) {
        const ParamSet& p = m.params;
        std::string pre = p.str(P::pre_xfer_exec), post = p.str(P::post_xfer_exec), early = p.str(P::early_exec),
                    namecvt = p.str(P::name_converter);
        if ((pre.empty() && post.empty() && early.empty() && namecvt.empty()) || hook_env_.contains("RSYNC_NO_XFER_EXEC"))
            return true;
        for (std::string* cmd : {&pre, &post, &early, &namecvt}) {
            if (cmd->empty()) continue;
            auto x = expand_vars(*cmd, hook_env_, true);
            if (!x) {
                spdlog::error("module {}: {}", m.name, x.error().message);
                refuse("module " + m.name + " refused to run its transfer hook", x.error().message);
                return false;
            }
            *cmd = std::move(*x);
        }
        if (!post.empty()) {
            if (auto f = fork_post_xfer_exec(post, hook_env_, {in_fd_, out_fd_}); !f) {
                refuse("fork failed", f.error().message);
                return false;
            }
        }
        if (!early.empty()) {
            // `early exec`: request "(NONE)", no arguments, the --early-input bytes on stdin;
            // a failure refuses the client before the module is entered.
            auto started = PreXferExec::start(early, hook_env_, {in_fd_, out_fd_});
            if (!started) {
                refuse("early exec preparation failed", started.error().message);
                return false;
            }
            if (auto err = started->finish("(NONE)", {}, early_input_, false)) {
                spdlog::warn("module {}: early exec failed: {}", m.name, printable(*err, 1024));
                refuse("early exec failed", *err);
                return false;
            }
        }
        if (!pre.empty()) {
            auto started = PreXferExec::start(pre, hook_env_, {in_fd_, out_fd_});
            if (!started) {
                refuse("pre-xfer exec preparation failed", started.error().message);
                return false;
            }
            pre_xfer_.emplace(std::move(*started));
        }
        if (!namecvt.empty()) {
            // `name converter` (name_converter.h): started here, as the daemon's user and
            // outside the chroot; it gets the request once the arguments are read.
            auto started = PreXferExec::start(namecvt, hook_env_, {in_fd_, out_fd_}, true);
            if (!started) {
                refuse("name-converter exec preparation failed", started.error().message);
                return false;
            }
            namecvt_exec_.emplace(std::move(*started));
            namecvt_cmd_ = namecvt;
        }
        return true;
    }

    void serve_module(const ModuleConfig& m) {
        const ParamSet& p = m.params;
        // `include from` / `exclude from` may live outside the module: read them before
        // admit() chroots. An unreadable one refuses the client (never serve unfiltered).
        std::vector<std::string> include_from, exclude_from;
        auto admitted = admit(m, [&](const std::string&) {
            for (auto [param, lines] : {std::pair{P::include_from, &include_from}, std::pair{P::exclude_from, &exclude_from}}) {
                if (!p.is_set(param) || p.str(param).empty()) continue;
                std::string err;
                auto l = read_filter_file(p.str(param), err);
                if (!l) {
                    refuse("module " + m.name + " cannot read its filter file", std::string(info(param).name) + " " + err);
                    return false;
                }
                *lines = std::move(*l);
            }
            return start_hooks(m);
        });
        if (!admitted) return;
        const std::optional<bool> user_read_only = admitted->user_read_only;
        const ModuleEnv* env = &admitted->env;

        if (auto w = ch_.write("@RSYNCD: OK\n"); !w) return fail_quietly(w.error().message);
        auto first_args = read_args(ch_, protocol_);
        if (!first_args) return fail_quietly(first_args.error().message);
        auto args = read_protected_args(ch_, std::move(*first_args));
        if (!args) return fail_quietly(args.error().message);
        if (spdlog::should_log(spdlog::level::debug)) {
            std::string joined;
            for (const auto& a : *args) joined += " [" + a + "]";
            spdlog::debug("module {} args:{}", m.name, joined);
        }
        const bool pull = is_pull(*args);
        report_.request = pull ? "pull" : "push";
        // RSYNC_REQUEST: the client's path arguments (after "."), space-separated, as
        // rsync's read_args() collects them (it stops adding at 1024 bytes).
        std::string request;
        {
            bool after_dot = false;
            for (const auto& a : *args) {
                if (after_dot && request.size() < 1024) request += (request.empty() ? "" : " ") + a;
                if (a == ".") after_dot = true;
            }
        }
        if (pre_xfer_) {
            auto err = pre_xfer_->finish(request, *args);
            pre_xfer_.reset();
            if (err) {
                std::string text = *err;
                while (!text.empty() && text.back() == '\n') text.pop_back();
                spdlog::warn("module {}: {}", m.name, printable(text, 1024));
                auto told = refuse_transfer(in_fd_, out_fd_, protocol_, text);
                ok_ = false;
                result_ = "refused: pre-xfer exec failed" + (told ? "" : " (" + told.error().message + ")");
                return;
            }
        }

        if (namecvt_exec_) {
            // rsync writes the request after the pre-xfer hook ran; a child that is already
            // gone shows up on the first lookup (name_converter.h).
            if (!namecvt_exec_->begin(request, *args))
                spdlog::warn("module {}: name converter '{}' did not take its request", m.name, namecvt_cmd_);
            namecvt_ = std::make_unique<NameConverter>(std::move(*namecvt_exec_), m.name, namecvt_cmd_);
            namecvt_exec_.reset();
        }

        ModuleAccess access;
        access.name = m.name;
        access.id_names = namecvt_.get();
        access.path = env->root;
        access.root_is_cwd = true;   // enter_module() chdir'd into the root
        access.read_only = user_read_only.value_or(p.flag(P::read_only));
        access.write_only = p.flag(P::write_only);
        access.ignore_errors = p.flag(P::ignore_errors);
        // rsyncd: munge unless chrooted to the module itself; a "/jail/./inner" module
        // chroots above the module, so its links could still reach the jail's other parts.
        access.munge_symlinks = p.tristate(P::munge_symlinks).value_or(!env->chrooted || env->root != "/");
        // rsyncd: numeric under chroot (no /etc/passwd there) unless a name converter maps.
        access.numeric_ids = p.tristate(P::numeric_ids).value_or(env->chrooted && !namecvt_);
        access.am_root = env->am_root;
        {
            std::vector<std::string> warnings;
            access.daemon_filter = module_filter_rules(p.str(P::filter), p.str(P::include), p.str(P::exclude), warnings,
                                                       include_from, exclude_from);
            for (const auto& w : warnings) spdlog::warn("module {}: {}", m.name, w);
        }
        access.incoming_chmod = p.str(P::incoming_chmod);
        access.outgoing_chmod = p.str(P::outgoing_chmod);
        access.transfer_logging = p.flag(P::transfer_logging);
        access.log_format = p.str(P::log_format);
        access.peer_host = peer_.display_name();
        access.peer_addr = peer_.address;
        access.user = report_.user;

        if (std::string opt = refused_option(*args, p.str(P::refuse_options)); !opt.empty()) {
            std::string msg = "The server is configured to refuse " + opt;
            auto told = refuse_transfer(in_fd_, out_fd_, protocol_, msg);
            ok_ = false;
            result_ = "refused: client option " + opt + " is in 'refuse options'" +
                      (told ? "" : " (" + told.error().message + ")");
            return;
        }
        // read only / write only are enforced by the session, which reports them on the
        // multiplexed error channel where the client prints them (rsync main.c does the same).
        if (pull ? access.write_only : access.read_only)
            spdlog::info("{} ({}): {} refused: module {} is {}", peer_.display_name(), peer_.address,
                         report_.request, m.name, pull ? "write only" : "read only");

        apply_io_timeout(static_cast<int>(p.number(P::timeout)));
        spdlog::info("rsync {} {} from {}{} ({})", pull ? "on" : "to", m.name,
                     report_.user.empty() ? "" : report_.user + "@", peer_.display_name(), peer_.address);

        auto stats = run_rsync_session(in_fd_, out_fd_, protocol_, *args, access);
        transfer_in_ = stats ? stats->bytes_read : 0;
        transfer_out_ = stats ? stats->bytes_written : 0;
        ok_ = stats.has_value();
        result_ = stats ? "ok" : "transfer failed: " + stats.error().message;
    }

    // The native syncfs replicator (docs/protocol.md §1, §5): `SYNCFS <version> <module>`, the
    // same admission as rsync clients (auth always with MD5), `@RSYNCD: OK`, then the binary
    // session of server/native. There is no argument list.
    void serve_native(const std::string& line) {
        std::string_view rest = std::string_view(line).substr(7);
        auto sp = rest.find(' ');
        std::string_view version = rest.substr(0, sp);
        std::string module = sp == std::string_view::npos ? std::string() : std::string(rest.substr(sp + 1));
        int v = 0;
        auto [vp, vec] = std::from_chars(version.data(), version.data() + version.size(), v);
        if (vec != std::errc() || vp != version.data() + version.size() || v <= 0 || module.empty() ||
            module.find_first_of(" \t/") != std::string::npos)
            return refuse("protocol startup error", "bad SYNCFS line '" + printable(line, 80) + "'");
        protocol_ = our_version();
        digest_list_ = std::string("md5");  // the native client always answers with MD5
        send_motd();
        const ModuleConfig* m = cfg_.find(module);
        if (!m) return refuse("Unknown module '" + printable(module) + "'", "unknown module '" + printable(module) + "'");
        report_.module = m->name;
        report_.request = "native";
        const ParamSet& p = m->params;

        // The state dir lives outside the module, so it is opened before chroot.
        UniqueFd state_dir;
        std::string state_path = p.str(P::syncfs_state_dir);
        if (state_path.empty()) state_path = "/var/lib/syncfsd";
        state_path += "/" + m->name;
        auto admitted = admit(*m, [&](const std::string& module_path) {
            // Inside a module, clients could read it and (with write access) rewrite the
            // stream files, whose holder pid a superseding session signals (stream_state.h).
            // Any module of the config counts, not only this one.
            std::string inside = is_beneath(module_path, state_path) ? module_path : "";
            for (const auto& other : cfg_.modules) {
                const std::string other_path = other.params.str(P::path);
                if (inside.empty() && other_path.find('%') == std::string::npos && is_beneath(other_path, state_path))
                    inside = other_path + " (module " + other.name + ")";
            }
            if (!inside.empty()) {
                refuse("module " + m->name + " cannot keep replication state",
                       "its syncfs state dir " + state_path + " is inside the module path " + inside +
                           ": set `syncfs state dir` to a directory outside every module");
                return false;
            }
            // Started as root, the session runs as the module's uid (default nobody, see
            // privileges.cc): that user must be able to create its stream files.
            std::optional<uid_t> owner;
            if (::geteuid() == 0) {
                std::string name = p.is_set(P::uid) ? p.str(P::uid) : "nobody";
                if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
                    owner = static_cast<uid_t>(std::stoul(name));
                } else if (const passwd* pw = ::getpwnam(name.c_str())) {
                    owner = pw->pw_uid;
                }
            }
            auto fd = native::open_state_dir(state_path, owner);
            if (!fd) {
                refuse("module " + m->name + " cannot keep replication state", fd.error().message);
                return false;
            }
            state_dir = std::move(*fd);
            return true;
        });
        if (!admitted) return;
        if (auto w = ch_.write("@RSYNCD: OK\n"); !w) return fail_quietly(w.error().message);

        NativeModule nm;
        nm.name = m->name;
        nm.path = admitted->env.root;
        nm.state_dir_fd = state_dir.get();
        nm.read_only = admitted->user_read_only.value_or(p.flag(P::read_only));
        nm.munge_symlinks = p.tristate(P::munge_symlinks).value_or(!admitted->env.chrooted);
        nm.am_root = admitted->env.am_root;
        nm.io_timeout_s = static_cast<int>(p.number(P::timeout));
        nm.own_process = true;
        nm.peer = peer_.display_name() + " (" + peer_.address + ")";
        spdlog::info("native replication to {} from {}{} ({}){}", m->name,
                     report_.user.empty() ? "" : report_.user + "@", peer_.display_name(), peer_.address,
                     nm.read_only ? " (read only)" : "");
        auto stats = run_native_session(in_fd_, out_fd_, nm);
        transfer_in_ = stats ? stats->bytes_in : 0;
        transfer_out_ = stats ? stats->bytes_out : 0;
        ok_ = stats.has_value();
        result_ = stats ? fmt::format("ok ops_applied={} ops_failed={} ops_skipped={}", stats->ops_applied,
                                      stats->ops_failed, stats->ops_skipped)
                        : "native session failed: " + stats.error().message;
    }

    // Returns the auth result, or nullopt after refusing the client.
    std::optional<AuthResult> authenticate(const ModuleConfig& m) {
        const ParamSet& p = m.params;
        auto digest = choose_auth_digest(digest_list_, protocol_);
        if (!digest) {
            refuse(digest.error().message, "no common auth digest");
            return std::nullopt;
        }
        // `auth digest = NAME`: the weakest digest the module accepts (rsync 3.5); a name
        // we do not know refuses everyone rather than silently allowing md4.
        if (std::string floor = p.str(P::auth_digest); !floor.empty()) {
            const int want = auth_digest_rank(floor), got = auth_digest_rank(*digest);
            std::string why;
            if (want < 0) why = "the configured 'auth digest = " + floor + "' is not a supported digest";
            else if (got > want)
                why = "negotiated auth digest " + std::string(auth_digest_name(*digest)) +
                      " is weaker than the required 'auth digest = " + floor + "'";
            if (!why.empty()) {
                spdlog::warn("auth failed on module {} from {} ({}): {}", m.name, peer_.display_name(), peer_.address, why);
                refuse("auth failed on module " + m.name, "auth failed: " + why);
                return std::nullopt;
            }
        }
        auto challenge = make_challenge();
        if (!challenge) {
            refuse("auth failed on module " + m.name, challenge.error().message);
            return std::nullopt;
        }
        if (!ch_.write("@RSYNCD: AUTHREQD " + *challenge + "\n")) {
            fail_quietly("client went away during auth");
            return std::nullopt;
        }
        auto line = ch_.read_line(kMaxLine);
        if (!line) {
            fail_quietly("no auth response: " + line.error().message);
            return std::nullopt;
        }
        AuthRequest req{m.name, p.str(P::auth_users), p.str(P::secrets_file), p.flag(P::strict_modes), *digest,
                        *challenge};
        auto res = check_auth(req, *line);
        if (!res) {
            if (auto sp = line->find(' '); sp != std::string::npos) report_.user = printable(line->substr(0, sp), 64);
            auth_fail_delay();
            // rsyncd's own log line for a failed login, which its tooling and tests match.
            std::string reason = res.error().message;
            if (auto q = reason.find("' denied by rule"); reason.starts_with("user '") && q != std::string::npos)
                reason = "denied by rule";
            spdlog::warn("auth failed on module {} from {} ({}) for {}: {}", m.name, peer_.display_name(), peer_.address,
                         report_.user.empty() ? "?" : report_.user, reason);
            refuse("auth failed on module " + m.name, "auth failed: " + res.error().message);
            return std::nullopt;
        }
        report_.user = printable(res->user, 64);
        return std::move(*res);
    }

    // Slows password guessing; randomized so the delay reveals nothing about the check.
    void auth_fail_delay() {
        std::random_device rd;
        std::uniform_int_distribution<int> d(opt_.auth_fail_delay_min_ms, std::max(opt_.auth_fail_delay_min_ms, opt_.auth_fail_delay_max_ms));
        std::this_thread::sleep_for(std::chrono::milliseconds(d(rd)));
    }

    // `timeout`: a blocked read or write in the transfer fails after this many seconds.
    void apply_io_timeout(int seconds) {
        if (seconds <= 0) return;
        timeval tv{seconds, 0};
        ::setsockopt(in_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(out_fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }

    void refuse(const std::string& client_text, const std::string& log_detail) {
        (void)ch_.write("@ERROR: " + client_text + "\n");
        ok_ = false;
        result_ = "refused: " + printable(log_detail, 512);
    }

    void fail_quietly(const std::string& why) {
        ok_ = false;
        result_ = why;
    }

    ConnectionReport finish(bool ok, std::string result) {
        report_.ok = ok;
        report_.host = peer_.display_name();
        report_.address = peer_.address;
        report_.result = std::move(result);
        report_.bytes_in = ch_.bytes_in() + transfer_in_;
        report_.bytes_out = ch_.bytes_out() + transfer_out_;
        return report_;
    }

    int in_fd_;
    int out_fd_;
    const DaemonConfig& cfg_;
    Peer peer_;
    const ConnectionOptions& opt_;
    LineChannel ch_;
    int protocol_ = 0;
    std::optional<std::string> digest_list_;
    UniqueFd slot_;  // holds the max-connections lock until the connection ends
    HookEnv hook_env_;                       // %VAR% values and the hooks' environment
    std::optional<PreXferExec> pre_xfer_;    // the waiting pre-xfer exec child
    std::optional<PreXferExec> namecvt_exec_;  // the name converter until the request is known
    std::string namecvt_cmd_;
    std::unique_ptr<NameConverter> namecvt_;   // the module's name <-> id mapping, if any
    std::string early_input_;                // the client's --early-input bytes
    ConnectionReport report_;
    bool ok_ = false;
    std::string result_;
    std::uint64_t transfer_in_ = 0;
    std::uint64_t transfer_out_ = 0;
};

}  // namespace

ConnectionReport serve_connection(int in_fd, int out_fd, const DaemonConfig& config, Peer peer,
                                  const ConnectionOptions& options) noexcept {
    const std::string address = peer.address;
    try {
        Connection c(in_fd, out_fd, config, std::move(peer), options);
        return c.run();
    } catch (const std::exception& e) {
        ConnectionReport r;
        r.address = address;
        r.host = "UNDETERMINED";
        r.result = std::string("internal error: ") + e.what();
        return r;
    }
}

std::string format_report(const ConnectionReport& r) {
    return fmt::format("connection from {} ({}): protocol={} module={} user={} request={} bytes_in={} bytes_out={} result={}",
                       r.host, r.address, r.protocol.empty() ? "-" : r.protocol,
                       r.module.empty() ? "-" : r.module, r.user.empty() ? "-" : r.user,
                       r.request.empty() ? "-" : r.request, r.bytes_in, r.bytes_out, r.result);
}

}  // namespace sfs::server
