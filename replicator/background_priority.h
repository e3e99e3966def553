// Replication work runs behind the writers it serves: the journal flusher, each mirror's
// sender and its ack reader lower their own thread's priority (nice +5, weight 335 against
// 1024 for the FUSE workers and the application) so that on a saturated machine the
// application's requests are served first and replication catches up in the gaps; it is
// never starved (docs/journal.md, "Priority").
#pragma once

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace sfs::repl {

inline void lower_this_thread_priority() noexcept {
    const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
    errno = 0;
    const int cur = ::getpriority(PRIO_PROCESS, tid);
    if (cur == -1 && errno != 0) return;
    (void)::setpriority(PRIO_PROCESS, tid, cur + 5 > 19 ? 19 : cur + 5);
}

}  // namespace sfs::repl
