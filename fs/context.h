// The mount context: everything a FUSE handler needs, reached through fuse_req_userdata().
// There are no globals in fs/; this struct is created by Session and outlives the loop.
#pragma once

#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#include "fs/change_record.h"
#include "fs/inode_table.h"
#include "fs/mount_options.h"

namespace sfs::fs {

// A sink that drops every record (used when the caller gives none).
class NullSink final : public ChangeSink {
public:
    void on_change(const ChangeRecord&) noexcept override {}
};

struct FsContext {
    FsContext(const MountOptions& o, UniqueFd root_fd, const struct stat& root_st, ChangeSink& s)
        : options(o), table(std::move(root_fd), root_st, o.max_fds), sink(s) {}

    MountOptions options;
    InodeTable table;
    ChangeSink& sink;
    // Serialises "syscall + emit" of namespace ops so records follow SOURCE order.
    std::mutex ns_mu;
    // Bumped (under ns_mu) by every op that removes or moves a name, after its syscall and
    // before its table update: a lookup made without ns_mu checks it (InodeTable::remember).
    std::atomic<std::uint64_t> ns_gen{0};
    fuse_session* se = nullptr;  // for kernel cache notifications
    // Negotiated at init.
    bool writeback = false;
    double timeout = 1.0;
    // FUSE_HANDLE_KILLPRIV_V2 (fs/request_io.h): whether init() asks for it, the INIT
    // request's unique id until its reply went out (0 otherwise), and whether the reply
    // asked for it (then handlers clear set-ID bits when the kernel's flags say so).
    bool want_killpriv_v2 = false;
    std::atomic<std::uint64_t> init_unique{0};
    std::atomic<bool> killpriv_v2{false};
};

inline FsContext& ctx_of(fuse_req_t req) noexcept {
    return *static_cast<FsContext*>(fuse_req_userdata(req));
}

}  // namespace sfs::fs
