// Replication work runs behind the writers it serves: the journal flusher, each mirror's
// sender and its ack reader lower their own thread's priority (nice +5, weight 335 against
// 1024 for the FUSE workers and the application) so that on a saturated machine the
// application's requests are served first and replication catches up in the gaps; it is
// never starved (docs/journal.md, "Priority").
#pragma once

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace sfs::repl {

// Idempotent: the main thread's nice + 5, whatever the calling thread inherited (a reader
// started by a sender would otherwise end up at +10).
inline void lower_this_thread_priority() noexcept {
    errno = 0;
    const int base = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::getpid()));
    if (base == -1 && errno != 0) return;
    const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
    (void)::setpriority(PRIO_PROCESS, tid, base + 5 > 19 ? 19 : base + 5);
}

}  // namespace sfs::repl
