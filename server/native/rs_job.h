// A librsync job (signature or patch) driven by pushed input, with its output handed to a
// sink. librsync may leave input unconsumed when it needs more to make progress (a command
// split across chunks); RsJob keeps that remainder for the next push.
#pragma once

#include <librsync.h>

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/result.h"

namespace sfs::server::native {

class RsJob {
public:
    using Sink = std::function<Result<void>(std::span<const std::uint8_t>)>;

    explicit RsJob(rs_job_t* job) noexcept : job_(job) {}
    RsJob(RsJob&& o) noexcept : job_(std::exchange(o.job_, nullptr)), pending_(std::move(o.pending_)), done_(o.done_) {}
    RsJob& operator=(RsJob&&) = delete;
    RsJob(const RsJob&) = delete;
    ~RsJob() {
        if (job_) rs_job_free(job_);
    }

    // Feeds `input` (may be empty) and runs the job until it needs more input, is done, or
    // fails. With eof, the job must reach RS_DONE or this fails ("truncated").
    Result<void> push(std::span<const std::uint8_t> input, bool eof, const Sink& sink);
    bool done() const noexcept { return done_; }

private:
    rs_job_t* job_ = nullptr;
    std::vector<std::uint8_t> pending_;
    bool done_ = false;
};

}  // namespace sfs::server::native
