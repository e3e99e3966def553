#include "server/native/stream_state.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "fmt/format.h"
#include "spdlog/spdlog.h"

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

// The holder's pid, bytes 24..27 of the record (0: not recorded, e.g. a file of an older
// syncfsd).
pid_t read_holder(int fd) {
    unsigned char b[4] = {};
    if (::pread(fd, b, sizeof b, 24) != static_cast<ssize_t>(sizeof b)) return 0;
    return static_cast<pid_t>(std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
                              std::uint32_t{b[3]} << 24);
}

// Asks `pid`, read from the state file as the holder of the stream lock, to end (SIGTERM: a
// native session then shuts its connection down and exits normally; SIGKILL when it did
// not). The pid is pinned with a pidfd and the file read again afterwards, so a holder that
// ended meanwhile (its pid possibly reused) is never signalled. False when there was no one
// to signal.
bool signal_holder(int fd, const std::string& stream_id, pid_t pid, int sig) {
    if (pid <= 0 || pid == ::getpid()) return false;
    // Raw syscalls: Debian 12's glibc 2.36 <sys/pidfd.h> lacks C linkage for C++.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) return false;
    // Still the holder once pinned? (A lock taken here is kept: the caller's next flock on
    // this same open file succeeds at once.)
    if (read_holder(fd) != pid || ::flock(fd, LOCK_EX | LOCK_NB) == 0) return false;
    if (::syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0) != 0) return false;
    spdlog::warn("stream \"{}\" is still held by session process {}: a new connection of the stream supersedes it "
                 "(the old connection is presumed dead: a network partition or a client crash); sent {}",
                 stream_id, pid, sig == SIGKILL ? "SIGKILL" : "SIGTERM");
    return true;
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

Result<StreamState> StreamState::open(int state_dir_fd, const std::string& stream_id, int lock_timeout_ms,
                                      const std::function<bool()>& stop_requested) {
    if (::mkdirat(state_dir_fd, "streams", 0700) != 0 && errno != EEXIST)
        return fail(fmt::format("cannot create streams/ in the state dir: {}", std::strerror(errno)), errno);
    std::string name = fmt::format("streams/{:016x}", XXH3_64bits(stream_id.data(), stream_id.size()));
    int fd = ::openat(state_dir_fd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return fail(fmt::format("cannot open stream state {}: {}", name, std::strerror(errno)), errno);
    StreamState state;
    state.fd_.reset(fd);
    state.dir_.reset(::openat(state_dir_fd, "streams", O_RDONLY | O_DIRECTORY | O_CLOEXEC));

    // A session that is just ending (a client reconnecting after a clean close) gets a short
    // grace; after it the holder is superseded: one stream has one client, so a second
    // connection of it means the first is dead on the client's side, however alive its TCP
    // connection looks here (half-open after a partition, until keepalive notices).
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    const auto deadline = start + std::chrono::milliseconds(lock_timeout_ms);
    const auto grace = start + std::chrono::milliseconds(std::min(1000, lock_timeout_ms / 4));
    std::optional<clock::time_point> termed;
    bool killed = false;
    pid_t last_holder = 0;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR)
            return fail(fmt::format("cannot lock stream state {}: {}", name, std::strerror(errno)), errno);
        const auto now = clock::now();
        if (stop_requested && stop_requested())
            return fail(fmt::format("stream \"{}\": told to stop while waiting for the older session", stream_id),
                        ECONNABORTED);
        if (now >= deadline)
            return fail(fmt::format("stream \"{}\" is still connected in another session", stream_id), EBUSY);
        // The holder writes its pid just after taking the lock: only a pid read twice, 50 ms
        // apart, with the lock held all along is taken as the holder's (never a pid left in
        // the file by an earlier holder, e.g. from before a reboot).
        const pid_t holder = read_holder(fd);
        const bool confirmed = holder > 0 && holder == last_holder;
        last_holder = holder;
        if (!termed && now >= grace && confirmed) {
            if (signal_holder(fd, stream_id, holder, SIGTERM)) termed = now;
        } else if (termed && !killed && now >= *termed + std::chrono::seconds(3)) {
            killed = signal_holder(fd, stream_id, holder, SIGKILL);
        }
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
    // Record ourselves as the holder (a later session of the stream may supersede us).
    state.pid_ = static_cast<std::uint32_t>(::getpid());
    if (auto w = state.set_applied(state.applied_); !w)
        return fail(fmt::format("cannot write stream state {}: {}", name, std::strerror(w.error())), w.error());
    return state;
}

SysResult<void> StreamState::set_applied(std::uint64_t seq) noexcept {
    unsigned char rec[kRecordSize] = {};
    std::memcpy(rec, kMagic, 8);
    put64(rec + 8, seq);
    put64(rec + 16, seq_check(seq));
    for (int i = 0; i < 4; ++i) rec[24 + i] = static_cast<unsigned char>(pid_ >> (8 * i));
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
