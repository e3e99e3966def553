#include "replicator/state_files.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/unique_fd.h"

namespace sfs::repl {
namespace {

std::string hex64(std::uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016" PRIx64, v);
    return b;
}

Result<void> fsync_dir(const std::string& dir) {
    UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0) return fail(dir + ": fsync: " + std::strerror(errno), errno);
    return {};
}

}  // namespace

std::string mirror_id(const std::string& url) { return hex64(XXH3_64bits(url.data(), url.size())); }

Result<void> write_file_atomic(const std::string& dir, const std::string& name, const std::string& content) {
    const std::string path = dir + "/" + name;
    const std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return fail(tmp + ": " + std::strerror(errno), errno);
    std::size_t done = 0;
    while (done < content.size()) {
        ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail(tmp + ": write: " + std::strerror(errno), errno);
        done += static_cast<std::size_t>(n);
    }
    if (::fdatasync(fd.get()) != 0) return fail(tmp + ": fdatasync: " + std::strerror(errno), errno);
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(path + ": rename: " + std::strerror(errno), errno);
    return fsync_dir(dir);
}

std::uint64_t load_cursor(const std::string& dir, const std::string& mirror_url) {
    const std::string path = dir + "/cursor-" + mirror_id(mirror_url);
    std::ifstream in(path);
    if (!in) return 0;
    std::string line;
    std::getline(in, line);
    // "syncfs-cursor 1 <seq> <xxh3 hex of 'syncfs-cursor 1 <seq>'>"
    auto sp = line.rfind(' ');
    if (sp == std::string::npos) {
        spdlog::warn("{}: malformed cursor file, resending the whole journal to {}", path, mirror_url);
        return 0;
    }
    std::string body = line.substr(0, sp);
    if (hex64(XXH3_64bits(body.data(), body.size())) != line.substr(sp + 1)) {
        spdlog::warn("{}: cursor checksum mismatch, resending the whole journal to {}", path, mirror_url);
        return 0;
    }
    std::istringstream fields(body);
    std::string magic;
    int version = 0;
    std::uint64_t seq = 0;
    if (!(fields >> magic >> version >> seq) || magic != "syncfs-cursor" || version != 1) {
        spdlog::warn("{}: malformed cursor file, resending the whole journal to {}", path, mirror_url);
        return 0;
    }
    return seq;
}

Result<void> save_cursor(const std::string& dir, const std::string& mirror_url, std::uint64_t seq) {
    std::string body = "syncfs-cursor 1 " + std::to_string(seq);
    return write_file_atomic(dir, "cursor-" + mirror_id(mirror_url),
                             body + " " + hex64(XXH3_64bits(body.data(), body.size())) + "\n");
}

bool clean_marker_present(const std::string& dir) {
    struct stat st;
    return ::stat((dir + "/clean").c_str(), &st) == 0;
}

Result<void> write_clean_marker(const std::string& dir) { return write_file_atomic(dir, "clean", "clean\n"); }

Result<void> remove_clean_marker(const std::string& dir) {
    const std::string path = dir + "/clean";
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return fail(path + ": unlink: " + std::strerror(errno), errno);
    return fsync_dir(dir);
}

}  // namespace sfs::repl
