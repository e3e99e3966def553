#include "server/native/rs_job.h"

#include <cerrno>
#include <string>

namespace sfs::server::native {

Result<void> RsJob::push(std::span<const std::uint8_t> input, bool eof, const Sink& sink) {
    if (!job_) return fail("librsync job could not be created", ENOMEM);
    if (done_) {
        if (!input.empty()) return fail("data after the end of the librsync stream", EINVAL);
        return {};
    }
    pending_.insert(pending_.end(), input.begin(), input.end());
    std::size_t consumed = 0;
    std::vector<std::uint8_t> out(256 * 1024);
    for (;;) {
        rs_buffers_t b{};
        b.next_in = reinterpret_cast<char*>(pending_.data() + consumed);
        b.avail_in = pending_.size() - consumed;
        b.eof_in = eof ? 1 : 0;
        b.next_out = reinterpret_cast<char*>(out.data());
        b.avail_out = out.size();
        const std::size_t before_in = b.avail_in;
        rs_result r = rs_job_iter(job_, &b);
        consumed += before_in - b.avail_in;
        const std::size_t produced = out.size() - b.avail_out;
        if (produced > 0) {
            if (auto s = sink(std::span<const std::uint8_t>(out.data(), produced)); !s) return s;
        }
        if (r == RS_DONE) {
            done_ = true;
            if (consumed != pending_.size()) return fail("data after the end of the librsync stream", EINVAL);
            break;
        }
        if (r != RS_BLOCKED) return fail(std::string("librsync: ") + rs_strerror(r), r == RS_IO_ERROR ? EIO : EINVAL);
        if (produced == 0 && before_in == b.avail_in) {
            if (eof) return fail("librsync stream truncated", EINVAL);
            break;  // needs more input
        }
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(consumed));
    return {};
}

}  // namespace sfs::server::native
