#include "fs/session.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <cstring>
#include <vector>

#include "common/syscalls.h"
#include "fs/context.h"
#include "fs/ops.h"
#include "fs/request_io.h"

namespace sfs::fs {
namespace {

// libfuse option values use ',' as separator and '\' as escape.
std::string escape_option(const std::string& value) {
    std::string out;
    for (char c : value) {
        if (c == ',' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

// The kernel caps a FUSE mount's readahead at the smaller of its bdi's (default 128 KiB)
// and the max_readahead we negotiate; sequential reads through the mount would then cost
// one request per 128 KiB, one at a time. Raise the bdi's to kReadaheadBytes (before INIT,
// which takes the minimum): 4 requests of ~1 MiB in flight, served by parallel workers. The device comes from mountinfo, because a
// stat() of the mountpoint would wait for INIT, which the loop has not answered yet.
void raise_readahead(const std::string& mountpoint) {
    char real[PATH_MAX];
    if (!::realpath(mountpoint.c_str(), real)) return;
    std::ifstream in("/proc/self/mountinfo");
    std::string line, device;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        std::string id, parent, majmin, root, point;
        f >> id >> parent >> majmin >> root >> point;
        if (point == real && line.find(" - fuse.syncfs ") != std::string::npos) device = majmin;
    }
    if (device.empty()) return;
    std::ofstream ra("/sys/class/bdi/" + device + "/read_ahead_kb");
    ra << kReadaheadBytes / 1024 << "\n";
    if (!ra) spdlog::debug("{}: cannot raise readahead of bdi {}", mountpoint, device);
}

}  // namespace

Result<std::unique_ptr<Session>> Session::create(const MountOptions& options, ChangeSink* sink) {
    std::unique_ptr<Session> s(new Session());
    auto root = sys::openat(AT_FDCWD, options.source.c_str(), O_PATH | O_DIRECTORY);
    if (!root) {
        return fail(options.source + ": " + (root.error() == ENOTDIR ? "not a directory" : std::strerror(root.error())),
                    root.error());
    }
    auto root_st = sys::fstat(root->get());
    if (!root_st) return fail(options.source + ": " + std::strerror(root_st.error()), root_st.error());
    auto mst = sys::fstatat(AT_FDCWD, options.mountpoint.c_str(), 0);
    if (!mst) return fail(options.mountpoint + ": " + std::strerror(mst.error()), mst.error());
    if (!S_ISDIR(mst->st_mode)) return fail(options.mountpoint + ": not a directory", ENOTDIR);

    MountOptions opts = options;
    // Without default_permissions the root daemon would let every user act as root.
    if (opts.allow_other && !opts.default_permissions) {
        opts.default_permissions = true;
        opts.fuse_options.emplace_back("default_permissions");
    }
    std::string source_abs = sys::fd_path(root->get()).value_or(options.source);

    if (!sink) {
        s->null_sink_ = std::make_unique<NullSink>();
        sink = s->null_sink_.get();
    }
    s->ctx_ = std::make_unique<FsContext>(opts, std::move(*root), *root_st, *sink);

    std::string fuse_opts = "fsname=" + escape_option(source_abs) + ",subtype=syncfs";
    for (const auto& o : opts.fuse_options) fuse_opts += "," + o;
    std::vector<std::string> argv_store = {"syncfs", "-o", fuse_opts};
    if (opts.debug) argv_store.emplace_back("-d");
    std::vector<char*> argv;
    for (auto& a : argv_store) argv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    const fuse_lowlevel_ops& ops = lowlevel_ops();
    s->se_ = fuse_session_new(&args, &ops, sizeof(ops), s->ctx_.get());
    if (!s->se_) return fail("cannot create the FUSE session (options: " + fuse_opts + ")");
    s->ctx_->se = s->se_;
    s->mountpoint_ = options.mountpoint;
    return s;
}

Session::~Session() {
    unmount();
    if (signals_ && se_) fuse_remove_signal_handlers(se_);
    if (se_) fuse_session_destroy(se_);
}

Result<void> Session::mount() {
    if (fuse_session_mount(se_, mountpoint_.c_str()) != 0) {
        return fail(mountpoint_ + ": cannot mount (see the message above)");
    }
    mounted_ = true;
    // Before the loop reads INIT: the reader notes what libfuse 3.14 does not pass on.
    if (auto r = install_request_io(se_); !r) return std::unexpected(r.error());
    raise_readahead(mountpoint_);
    std::lock_guard lock(notify_mu_);
    can_notify_ = true;
    return {};
}

Result<void> Session::install_signal_handlers() {
    if (fuse_set_signal_handlers(se_) != 0) return fail("cannot install signal handlers");
    signals_ = true;
    return {};
}

Result<void> Session::loop() {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    if (!cfg) return fail("out of memory");
    fuse_loop_cfg_set_clone_fd(cfg, 1);
    fuse_loop_cfg_set_max_threads(cfg, ctx_->options.max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, ctx_->options.max_threads);
    int rc = fuse_session_loop_mt(se_, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (rc < 0) return fail(std::string("FUSE loop failed: ") + std::strerror(-rc), -rc);
    return {};
}

void Session::unmount() {
    {
        std::lock_guard lock(notify_mu_);
        can_notify_ = false;
    }
    if (mounted_) {
        fuse_session_unmount(se_);
        mounted_ = false;
    }
}

}  // namespace sfs::fs
