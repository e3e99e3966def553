#include "server/daemon/conn_limit.h"

#include <fcntl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace sfs::server {
namespace {

constexpr int kMaxSlots = 1 << 16;      // per module; larger limits are clamped
constexpr off_t kSlotSize = 4;

off_t region_of(const std::string& module) {
    std::uint64_t h = 14695981039346656037ull;  // FNV-1a
    for (unsigned char c : module) {
        h ^= c;
        h *= 1099511628211ull;
    }
    // 2^20 regions of kMaxSlots * kSlotSize bytes; offsets stay far below 2^63.
    return static_cast<off_t>(h & 0xfffff) * kMaxSlots * kSlotSize;
}

}  // namespace

Result<std::optional<UniqueFd>> claim_connection_slot(const std::string& lock_file,
                                                       const std::string& module, int max) {
    if (max <= 0) return std::optional<UniqueFd>(UniqueFd());
    UniqueFd fd(::open(lock_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail(lock_file + ": cannot open lock file: " + std::strerror(errno), errno);
    const off_t base = region_of(module);
    const int slots = max < kMaxSlots ? max : kMaxSlots;
    for (int i = 0; i < slots; ++i) {
        struct flock fl {};
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = base + i * kSlotSize;
        fl.l_len = kSlotSize;
        if (::fcntl(fd.get(), F_SETLK, &fl) == 0) return std::optional<UniqueFd>(std::move(fd));
        if (errno != EACCES && errno != EAGAIN)
            return fail(lock_file + ": fcntl lock: " + std::strerror(errno), errno);
    }
    return std::optional<UniqueFd>();
}

}  // namespace sfs::server
