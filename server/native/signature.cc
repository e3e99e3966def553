#include "server/native/signature.h"

#include <fcntl.h>
#include <librsync.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "server/native/apply.h"
#include "server/native/resolve.h"
#include "server/native/rs_job.h"

namespace sfs::server::native {

namespace pn = protocol::native;

Result<BasisInfo> make_signature(int root, const pn::SignatureRequest& req,
                                 const std::function<Result<void>(std::span<const std::uint8_t>)>& emit) {
    auto fd = open_beneath(root, req.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (!fd) return op_error("signature", req.path, fd.error());
    struct stat st{};
    if (::fstat(fd->get(), &st) != 0) return op_error("signature", req.path, errno);
    if (!S_ISREG(st.st_mode)) return op_error("signature", req.path, EINVAL);
    BasisInfo info{static_cast<std::uint64_t>(st.st_size), {st.st_mtim.tv_sec, static_cast<std::uint32_t>(st.st_mtim.tv_nsec)}};

    rs_magic_number magic = static_cast<rs_magic_number>(0);
    size_t block_len = req.block_len;
    size_t strong_len = req.strong_len;
    if (rs_result r = rs_sig_args(st.st_size, &magic, &block_len, &strong_len); r != RS_DONE)
        return op_error(std::string("signature (") + rs_strerror(r) + ")", req.path, EINVAL);
    RsJob job(rs_sig_begin(block_len, strong_len, magic));

    // Chunks go out when full, and at least every kEmitInterval while there is something to
    // send: a large file yields little signature data per second (one entry per block of up
    // to ~1 MiB read and hashed), and only a write can tell that the client has gone. Without
    // it a session whose client died would hash a huge file to the end, holding the stream.
    constexpr auto kEmitInterval = std::chrono::milliseconds(500);
    auto last_emit = std::chrono::steady_clock::now();
    std::vector<std::uint8_t> pending;
    bool emit_failed = false;
    Error emit_error;
    auto sink = [&](std::span<const std::uint8_t> out) -> Result<void> {
        pending.insert(pending.end(), out.begin(), out.end());
        auto now = std::chrono::steady_clock::now();
        while (pending.size() >= pn::kMaxChunk || (!pending.empty() && now - last_emit >= kEmitInterval)) {
            std::size_t n = std::min<std::size_t>(pending.size(), pn::kMaxChunk);
            auto r = emit(std::span<const std::uint8_t>(pending.data(), n));
            if (!r) {
                emit_failed = true;
                emit_error = r.error();
                return r;
            }
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(n));
            last_emit = now;
        }
        return {};
    };
    std::vector<std::uint8_t> buf(256 * 1024);
    for (;;) {
        ssize_t n = ::read(fd->get(), buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return op_error("signature (read)", req.path, errno);
        }
        auto r = job.push(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)), n == 0, sink);
        if (!r) {
            if (emit_failed) return std::unexpected(emit_error);
            return op_error("signature (" + r.error().message + ")", req.path, EIO);
        }
        if (n == 0) break;
    }
    if (!pending.empty()) {
        if (auto r = emit(pending); !r) return std::unexpected(r.error());
    }
    return info;
}

}  // namespace sfs::server::native
