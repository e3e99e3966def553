// syncfsd: the mirror-side server. Speaks the rsync daemon protocol (and, later, the native
// syncfs protocol) on one port. See man/syncfsd.8 and docs/syncfsd.md.
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
    CLI11_PARSE(app, argc, argv);
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
