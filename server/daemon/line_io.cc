#include "server/daemon/line_io.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sfs::server {

Result<bool> LineChannel::wait_readable() {
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ -
                                                                          std::chrono::steady_clock::now());
        if (left.count() <= 0) return fail("timed out waiting for the client", ETIMEDOUT);
        pollfd p{in_, POLLIN, 0};
        int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 60'000)));
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail(std::string("poll: ") + std::strerror(errno), errno);
        }
        if (r > 0) return true;
    }
}

Result<std::string> LineChannel::read_line(std::size_t max_len, char terminator) {
    std::string line;
    for (;;) {
        if (auto ok = wait_readable(); !ok) return std::unexpected(ok.error());
        char c;
        ssize_t n = ::read(in_, &c, 1);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return fail(std::string("read: ") + std::strerror(errno), errno);
        }
        if (n == 0) return fail("connection closed by the client");
        ++bytes_in_;
        if (c == terminator) break;
        if (c == '\0') return fail("NUL byte in a text line");
        if (line.size() >= max_len) return fail("line longer than " + std::to_string(max_len) + " bytes");
        line.push_back(c);
    }
    if (terminator == '\n' && !line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

Result<std::string> LineChannel::read_bytes(std::size_t n) {
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        if (auto ok = wait_readable(); !ok) return std::unexpected(ok.error());
        ssize_t r = ::read(in_, out.data() + got, n - got);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return fail(std::string("read: ") + std::strerror(errno), errno);
        }
        if (r == 0) return fail("connection closed by the client");
        got += static_cast<std::size_t>(r);
        bytes_in_ += static_cast<std::uint64_t>(r);
    }
    return out;
}

Result<void> LineChannel::write(std::string_view text) {
    while (!text.empty()) {
        ssize_t n = ::write(out_, text.data(), text.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return fail(std::string("write: ") + std::strerror(errno), errno);
        }
        bytes_out_ += static_cast<std::uint64_t>(n);
        text.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

}  // namespace sfs::server
