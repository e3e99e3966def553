// run_rsync_session(): the binary phase of an rsync daemon connection (main.c start_server
// at protocol 27): checksum seed, then the multiplexed output stream, then the sender or
// receiver role. Any failure is reported to the client on the error channel before the
// connection is closed, so the client prints it instead of hanging.
#include "server/rsync/session.h"

#include <sys/stat.h>
#include <unistd.h>

#include <sys/socket.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <random>
#include <tuple>

#include <spdlog/spdlog.h>

#include "server/rsync/context.h"
#include "server/rsync/filter_dirs.h"

namespace sfs::server {

int max_protocol_version() noexcept { return 27; }

namespace rsync {

void Context::info(const std::string& text) {
    spdlog::debug("rsync [{}] {}: {}", module ? module->name : "", peer, text);
    (void)out->send_msg(protocol::MsgTag::info, text + "\n");
}

void Context::error(const std::string& text) {
    spdlog::warn("rsync [{}] {}: {}", module ? module->name : "", peer, text);
    (void)out->send_msg(protocol::MsgTag::error_xfer, text + "\n");
}

std::string module_relative_arg(const std::string& module_name, const std::string& arg) {
    std::string_view a = arg;
    if (a.starts_with(module_name) && (a.size() == module_name.size() || a[module_name.size()] == '/'))
        a.remove_prefix(module_name.size());
    bool trailing = !a.empty() && a.back() == '/';
    std::string out;
    std::size_t i = 0;
    while (i < a.size()) {
        std::size_t j = a.find('/', i);
        if (j == std::string_view::npos) j = a.size();
        std::string_view comp = a.substr(i, j - i);
        i = j + 1;
        if (comp.empty() || comp == "." || comp == "..") continue;   // sanitize_path drops ".."
        if (!out.empty()) out += '/';
        out += comp;
    }
    if (trailing && !out.empty()) out += '/';
    if (trailing && out.empty()) out = "";
    return out;
}

std::string join_path(const std::string& dir, const std::string& name) {
    if (dir.empty() || dir == ".") return name;
    if (name == ".") return dir;
    return dir + "/" + name;
}

}  // namespace rsync

Result<SessionStats> run_rsync_session(int in_fd, int out_fd, int protocol,
                                       const std::vector<std::string>& args,
                                       const ModuleAccess& module) {
    using namespace rsync;
    protocol::MuxWriter out(out_fd);
    protocol::FdReader in(in_fd, "client");
    in.set_before_block([&out] { (void)out.flush(); });
    Context ctx;
    ctx.protocol = protocol;
    ctx.module = &module;
    ctx.in_fd = in_fd;
    ctx.in = &in;
    ctx.out = &out;
    ctx.peer = "client";

    auto finish_with_error = [&](const Error& e) -> Result<SessionStats> {
        ctx.error(e.message);
        (void)out.flush();
        // Give the client a moment to read the message before the close (rsync: msleep(400)).
        ::shutdown(out_fd, SHUT_WR);
        return std::unexpected(e);
    };

    if (protocol < 27 || protocol > max_protocol_version()) {
        // The daemon announced max_protocol_version(); below 27 we do not speak the format.
        std::string msg = "@ERROR: protocol version " + std::to_string(protocol) +
                          " is not supported (this server speaks " +
                          std::to_string(max_protocol_version()) + ")\n";
        (void)protocol::write_all(out_fd, msg.data(), msg.size());
        return fail("client protocol " + std::to_string(protocol) + " not supported");
    }

    auto opts = parse_server_args(args);
    ctx.seed = opts && opts->checksum_seed ? opts->checksum_seed
                                           : static_cast<std::int32_t>(std::time(nullptr) ^ (::getpid() << 6));
    {
        std::string seed;
        protocol::put_i32(seed, ctx.seed);
        if (auto r = protocol::write_all(out_fd, seed.data(), seed.size()); !r) return std::unexpected(r.error());
    }
    if (!opts) return finish_with_error(opts.error());
    ctx.opt = std::move(*opts);
    const ServerOptions& o = ctx.opt;
    ctx.raw_in = &in;
    // A pull with --remove-source-files: the client multiplexes everything it sends from
    // here on (rsync main.c need_messages_from_generator), so it can report each file.
    std::optional<protocol::MuxReader> mux;
    if (o.sender && o.remove_source) {
        mux.emplace(in);
        mux->on_message = [&module](int tag, const std::string& text) {
            spdlog::info("rsync [{}] client message ({}): {}", module.name, tag, text.substr(0, 1024));
        };
        ctx.mux = &*mux;
        ctx.in = &*mux;
    }
    ctx.flist.protocol = protocol;
    ctx.flist.preserve_uid = o.owner;
    ctx.flist.preserve_gid = o.group;
    ctx.flist.preserve_links = o.links;
    ctx.flist.preserve_devices = o.devices;
    ctx.flist.preserve_specials = o.specials;
    ctx.flist.preserve_hard_links = o.hard_links;
    ctx.flist.always_checksum = o.checksum;
    ctx.flist.preserve_atimes = o.atimes;
    ctx.flist.allow_missing = o.missing_args == 2;

    for (const auto& rule : module.daemon_filter) ctx.daemon_filters.add(rule);
    {
        const mode_t mask = ::umask(0);
        ::umask(mask);
        for (auto [text, spec, name] : {std::tuple{&module.incoming_chmod, &ctx.incoming_chmod, "incoming chmod"},
                                        std::tuple{&module.outgoing_chmod, &ctx.outgoing_chmod, "outgoing chmod"}}) {
            if (text->empty()) continue;
            *spec = ChmodSpec::parse(*text, mask);
            if (!*spec)
                return finish_with_error(Error{std::string("Invalid \"") + name + "\" string in module " + module.name, EINVAL});
        }
    }

    auto root = ModuleRoot::open(module.root_is_cwd ? std::string(".") : module.path);
    if (!root) return finish_with_error(Error{"rsync: " + root.error().message, root.error().code});
    ctx.root = std::move(*root);

    // The client's filter options (filter.h): merge files are read now, beneath the module
    // and never where the daemon's own rules hide them.
    ctx.filters.set_role(o.sender ? FilterRole::sender : FilterRole::receiver);
    {
        const MergeReader read = module_merge_reader(ctx);
        for (const auto& f : o.filter_args)
            if (auto r = ctx.filters.add_arg(f.text, f.kind, f.from_file, read); !r) return finish_with_error(r.error());
    }

    spdlog::info("rsync [{}] {} starts (protocol {}, {} args)", module.name, o.sender ? "send" : "receive",
                 protocol, args.size());
    Result<void> r = o.sender ? run_sender(ctx) : run_receiver(ctx);
    if (!r) return finish_with_error(r.error());
    if (auto f = out.flush(); !f) return std::unexpected(f.error());
    ctx.stats.bytes_read = in.bytes_read();
    ctx.stats.bytes_written = out.bytes_written();
    return ctx.stats;
}

}  // namespace sfs::server
