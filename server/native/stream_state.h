// The mirror's memory of each replication stream: the highest mutation seq it has applied.
//
// One file per stream, `<state dir>/streams/<16 hex of XXH3-64(stream_id)>`, 32 bytes:
// magic "SFSSEQ01", u64 seq, u64 XXH3-64 of the seq (LE), u32 pid of the holding session, 4 zero
// bytes. It is rewritten in place with one pwrite after every applied mutation (before the Ack
// that covers it) and fsynced at durable points. A file that fails its checksum (torn by a
// crash) reads as seq 0: every op is then replayed, which the applier's idempotence rules make
// harmless.
//
// The file is flock()ed for the session, so two sessions never interleave one stream. A second
// connection of the same stream waits up to 1 s for the first to end, then supersedes it: the
// holder (its pid from the file, read twice 50 ms apart with the lock held, then pinned by a
// pidfd) gets SIGTERM, then SIGKILL 3 s later. The pid is only meaningful within one pid
// namespace: a state dir must not be shared by syncfsd instances in different containers. A
// stream has one client, so its reconnecting means the old connection is dead on the client's
// side (a network partition, a client crash), even when it still looks open here.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sfs::server::native {

class StreamState {
public:
    // Opens (creating) the state file of `stream_id` in `state_dir_fd` (a directory fd) and
    // locks it, superseding (see above) another session of the stream, waiting at most
    // lock_timeout_ms for it to end.
    // `stop_requested` (may be empty) is polled while waiting: a session told to end meanwhile
    // gives up instead of superseding anyone.
    static Result<StreamState> open(int state_dir_fd, const std::string& stream_id, int lock_timeout_ms,
                                    const std::function<bool()>& stop_requested = {});

    std::uint64_t applied() const noexcept { return applied_; }
    // Records seq as applied (pwrite, no fsync).
    SysResult<void> set_applied(std::uint64_t seq) noexcept;
    // fsync of the state file.
    SysResult<void> sync() noexcept;

private:
    UniqueFd fd_;
    UniqueFd dir_;            // streams/, fsynced once so a new state file's name is durable
    bool dir_synced_ = false;
    std::uint64_t applied_ = 0;
    std::uint32_t pid_ = 0;   // ours, written into every record as the holder
};

// Opens or creates (mode 0700, parents included) the state directory. With `owner` (the
// uid the session will run as after the daemon drops root), the directory itself is chowned
// to it so the session can create its stream files; its parents stay root-only, and the
// session reaches it through the returned fd.
Result<UniqueFd> open_state_dir(const std::string& path, std::optional<uid_t> owner = std::nullopt);

}  // namespace sfs::server::native
