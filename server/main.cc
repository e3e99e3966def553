// syncfsd: the mirror-side server. Speaks the rsync daemon protocol (and, later, the native
// syncfs protocol) on one port. See man/syncfsd.8 and docs/syncfsd.md.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "server/daemon/config.h"
#include "server/daemon/daemon.h"

int main(int argc, char** argv) {
    sfs::server::DaemonOptions opt;
    CLI::App app{"syncfsd: rsync-compatible mirror server"};
    app.set_version_flag("--version", "syncfsd 0.1.0");
    app.add_option("--config", opt.config_path, "configuration file (rsyncd.conf format)")
        ->capture_default_str();
    int port = -1;
    std::string address;
    app.add_option("--port", port, "TCP port (overrides 'port')")->check(CLI::Range(0, 65535));
    app.add_option("--address", address, "local address to bind (overrides 'address')");
    app.add_flag("--no-detach", opt.no_detach, "stay in the foreground");
    app.add_option("--log-file", opt.log_file, "log to FILE (overrides 'log file')");
    app.add_flag("--inetd", opt.inetd, "serve one connection on stdin/stdout");
    bool debug = false;
    app.add_flag("-d,--debug", debug, "debug logging");
    // `rsync --daemon` compatibility, so syncfsd can stand in wherever rsyncd is started
    // by its own command line (inetd entries, RSYNC_CONNECT_PROG, --rsync-path over ssh):
    //   --daemon                 stdin is a socket: serve that one connection (as --inetd);
    //                            otherwise listen (detaching unless --no-detach).
    //   --server --daemon .      daemon over a remote shell: serve stdin/stdout.
    bool rsync_daemon = false, rsync_server = false;
    std::vector<std::string> rest;
    app.add_flag("--daemon", rsync_daemon, "rsync compatibility: behave as `rsync --daemon`");
    app.add_flag("--server", rsync_server, "rsync compatibility: with --daemon, serve stdin/stdout (remote shell)");
    app.add_option("args", rest, "ignored (`rsync --server --daemon .` passes \".\")");
    CLI11_PARSE(app, argc, argv);
    if (rsync_server && !rsync_daemon) {
        std::fprintf(stderr, "syncfsd: --server is only supported together with --daemon\n");
        return 1;
    }
    if (rsync_daemon) {
        struct stat st {};
        if (rsync_server) {
            opt.inetd = true;
            opt.over_remote_shell = true;
        } else if (::fstat(0, &st) == 0 && S_ISSOCK(st.st_mode)) {
            opt.inetd = true;
        }
    }
    if (port >= 0) opt.port = port;
    if (!address.empty()) opt.address = address;

    std::vector<std::string> warnings;
    auto cfg = sfs::server::load_config(opt.config_path, warnings);
    if (!cfg) {
        std::fprintf(stderr, "syncfsd: %s\n", cfg.error().message.c_str());
        return 1;
    }

    sfs::LogOptions log;
    log.program = "syncfsd";
    log.file = opt.log_file.empty() ? cfg->global.str(sfs::server::P::log_file) : opt.log_file;
    // In --inetd mode stdout/stderr may be the client's socket: never log there.
    log.use_syslog = opt.inetd || !opt.no_detach;
    log.debug = debug;
    if (auto ok = sfs::init_logging(log); !ok) {
        std::fprintf(stderr, "syncfsd: %s\n", ok.error().message.c_str());
        return 1;
    }
    for (const auto& w : warnings) {
        spdlog::warn("{}", w);
        if (!opt.inetd && log.file.empty() && !opt.no_detach) std::fprintf(stderr, "syncfsd: warning: %s\n", w.c_str());
    }

    if (opt.inetd) return sfs::server::run_inetd(opt, *cfg);
    return sfs::server::run_daemon(opt, std::move(*cfg));
}
