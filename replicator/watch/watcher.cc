#include "replicator/watch/watcher.h"

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"
#include "replicator/watch/fanotify_watcher.h"
#include "replicator/watch/inotify_watcher.h"

namespace sfs::repl::watch {

Result<std::unique_ptr<Watcher>> Watcher::start(int source_dir_fd, std::string source_path, WatchOptions options,
                                                OutsideChangeSink& sink) {
    // Our own fd on SOURCE: the caller's may be O_PATH, and its lifetime is not ours.
    auto own_root = [&]() -> Result<UniqueFd> {
        UniqueFd fd(::openat(source_dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!fd) return fail(source_path + ": cannot open SOURCE for watching: " + std::strerror(errno), errno);
        return fd;
    };
    if (options.backend != Backend::Inotify) {
        auto root = own_root();
        if (!root) return std::unexpected(root.error());
        auto fan = start_fanotify(std::move(*root), source_path, options, sink);
        if (fan || options.backend == Backend::Fanotify) return fan;
        spdlog::info("watcher {}: fanotify unavailable ({}), using inotify", source_path, fan.error().message);
    }
    auto root = own_root();
    if (!root) return std::unexpected(root.error());
    return start_inotify(std::move(*root), std::move(source_path), std::move(options), sink);
}

}  // namespace sfs::repl::watch
