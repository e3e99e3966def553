#include "server/native/stream_state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "fmt/format.h"

namespace sfs::server::native {
namespace {

constexpr char kMagic[8] = {'S', 'F', 'S', 'S', 'E', 'Q', '0', '1'};
constexpr std::size_t kRecordSize = 32;

void put64(unsigned char* p, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint64_t get64(const unsigned char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
    return v;
}
std::uint64_t seq_check(std::uint64_t seq) {
    unsigned char b[8];
    put64(b, seq);
    return XXH3_64bits(b, sizeof b);
}

}  // namespace

Result<UniqueFd> open_state_dir(const std::string& path, std::optional<uid_t> owner) {
    if (path.empty() || path.front() != '/') return fail(fmt::format("state dir \"{}\" must be an absolute path", path), EINVAL);
    // mkdir -p, one component at a time.
    for (std::size_t pos = 1; pos <= path.size(); ++pos) {
        if (pos == path.size() || path[pos] == '/') {
            std::string prefix = path.substr(0, pos);
            if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST)
                return fail(fmt::format("cannot create state dir \"{}\": {}", prefix, std::strerror(errno)), errno);
        }
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail(fmt::format("cannot open state dir \"{}\": {}", path, std::strerror(errno)), errno);
    UniqueFd dir(fd);
    if (owner && ::fchown(dir.get(), *owner, static_cast<gid_t>(-1)) != 0)
        return fail(fmt::format("cannot chown state dir \"{}\" to uid {}: {}", path, *owner, std::strerror(errno)), errno);
    return dir;
}

Result<StreamState> StreamState::open(int state_dir_fd, const std::string& stream_id, int lock_timeout_ms) {
    if (::mkdirat(state_dir_fd, "streams", 0700) != 0 && errno != EEXIST)
        return fail(fmt::format("cannot create streams/ in the state dir: {}", std::strerror(errno)), errno);
    std::string name = fmt::format("streams/{:016x}", XXH3_64bits(stream_id.data(), stream_id.size()));
    int fd = ::openat(state_dir_fd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail(fmt::format("cannot open stream state {}: {}", name, std::strerror(errno)), errno);
    StreamState state;
    state.fd_.reset(fd);
    state.dir_.reset(::openat(state_dir_fd, "streams", O_RDONLY | O_DIRECTORY | O_CLOEXEC));

    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(lock_timeout_ms);
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return fail(fmt::format("cannot lock stream state {}: {}", name, std::strerror(errno)), errno);
        if (std::chrono::steady_clock::now() >= deadline)
            return fail(fmt::format("stream \"{}\" is still connected in another session", stream_id), EBUSY);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }

    unsigned char rec[kRecordSize] = {};
    ssize_t n = ::pread(fd, rec, sizeof rec, 0);
    if (n < 0) return fail(fmt::format("cannot read stream state {}: {}", name, std::strerror(errno)), errno);
    if (n == static_cast<ssize_t>(kRecordSize) && std::memcmp(rec, kMagic, 8) == 0 &&
        get64(rec + 16) == seq_check(get64(rec + 8))) {
        state.applied_ = get64(rec + 8);
    } else if (n != 0) {
        state.applied_ = 0;  // torn or foreign: replay everything (ops are idempotent)
    }
    return state;
}

SysResult<void> StreamState::set_applied(std::uint64_t seq) noexcept {
    unsigned char rec[kRecordSize] = {};
    std::memcpy(rec, kMagic, 8);
    put64(rec + 8, seq);
    put64(rec + 16, seq_check(seq));
    ssize_t n = ::pwrite(fd_.get(), rec, sizeof rec, 0);
    if (n < 0) return last_errno();
    if (n != static_cast<ssize_t>(kRecordSize)) return std::unexpected(EIO);
    applied_ = seq;
    return {};
}

SysResult<void> StreamState::sync() noexcept {
    if (::fdatasync(fd_.get()) != 0) return last_errno();
    if (!dir_synced_ && dir_) {
        if (::fsync(dir_.get()) != 0) return last_errno();
        dir_synced_ = true;
    }
    return {};
}

}  // namespace sfs::server::native
