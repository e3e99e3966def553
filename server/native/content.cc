#include "server/native/content.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "fmt/format.h"
#include "protocol/native/content_hash.h"
#include "server/native/resolve.h"
#include "server/native/rs_job.h"

namespace sfs::server::native {

namespace pn = protocol::native;

struct ContentTransfer::State {
    pn::ContentBegin op;
    UniqueFd parent;
    std::string name;
    std::string tmp;
    UniqueFd out;
    UniqueFd basis;  // delta only
    int basis_raw = -1;  // what librsync's copy callback reads (points into this heap State)
    std::optional<RsJob> patch;
    std::uint64_t written = 0;
    pn::ContentHasher hash;

    ~State() { discard(); }
    void discard() noexcept {
        if (!tmp.empty() && parent) ::unlinkat(parent.get(), tmp.c_str(), 0);
        tmp.clear();
        out.reset();
    }
    Result<void> write_out(std::span<const std::uint8_t> data) {
        std::size_t done = 0;
        while (done < data.size()) {
            ssize_t n = ::write(out.get(), data.data() + done, data.size() - done);
            if (n < 0) {
                if (errno == EINTR) continue;
                return op_error("write", op.path, errno);
            }
            done += static_cast<std::size_t>(n);
        }
        written += data.size();
        if (written > op.size) return op_error("write (more data than announced)", op.path, EFBIG);
        hash.update(data);
        return {};
    }
};

namespace {

// librsync basis reader: pread from the mirror's current file.
rs_result read_basis(void* opaque, rs_long_t pos, size_t* len, void** buf) {
    int fd = *static_cast<int*>(opaque);
    if (pos < 0) return RS_IO_ERROR;
    ssize_t n;
    do {
        n = ::pread(fd, *buf, *len, static_cast<off_t>(pos));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return RS_IO_ERROR;
    if (n == 0) return RS_INPUT_ENDED;
    *len = static_cast<size_t>(n);
    return RS_DONE;
}

}  // namespace

ContentTransfer::ContentTransfer(std::unique_ptr<State> state) noexcept : s_(std::move(state)) {}
ContentTransfer::ContentTransfer(ContentTransfer&&) noexcept = default;
ContentTransfer& ContentTransfer::operator=(ContentTransfer&&) noexcept = default;
ContentTransfer::~ContentTransfer() = default;

std::uint64_t ContentTransfer::seq() const noexcept { return s_ ? s_->op.seq : 0; }

Result<ContentTransfer> ContentTransfer::begin(const ApplyContext& ctx, const pn::ContentBegin& op) {
    auto s = std::make_unique<State>();
    s->op = op;
    auto p = resolve_parent(ctx.root, op.path);
    if (!p) return op_error("write", op.path, p.error());
    s->parent = std::move(p->parent);
    s->name = std::move(p->name);
    if (op.encoding == pn::ContentEncoding::Delta) {
        // The basis must be the regular file now at the path (never through a symlink).
        int fd = ::openat(s->parent.get(), s->name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) return op_error("delta basis", op.path, errno);
        s->basis.reset(fd);
        s->basis_raw = fd;
        struct stat st{};
        if (::fstat(fd, &st) != 0) return op_error("delta basis", op.path, errno);
        if (!S_ISREG(st.st_mode)) return op_error("delta basis", op.path, EINVAL);
    }
    std::string tmp = temp_name(s->name, *ctx.rng);
    int fd = ::openat(s->parent.get(), tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return op_error("create temp file for", op.path, errno);
    s->tmp = std::move(tmp);
    s->out.reset(fd);
    if (op.encoding == pn::ContentEncoding::Delta) s->patch.emplace(rs_patch_begin(&read_basis, &s->basis_raw));
    // Reserve the space up front where the filesystem allows it: ENOSPC then shows at the
    // start of the transfer instead of near its end.
    if (op.size > 0 && ::fallocate(s->out.get(), 0, 0, static_cast<off_t>(op.size)) != 0 &&
        errno != EOPNOTSUPP && errno != ENOSYS)
        return op_error("write", op.path, errno);
    return ContentTransfer(std::move(s));
}

Result<void> ContentTransfer::chunk(std::span<const std::uint8_t> data) {
    if (!s_ || !s_->out) return fail("content transfer is not open", EINVAL);
    if (s_->op.encoding == pn::ContentEncoding::Literal) return s_->write_out(data);
    auto r = s_->patch->push(data, false, [this](std::span<const std::uint8_t> out) { return s_->write_out(out); });
    if (!r && r.error().message.find('"') == std::string::npos)
        return op_error(fmt::format("delta ({})", r.error().message), s_->op.path, r.error().code ? r.error().code : EINVAL);
    return r;
}

Result<void> ContentTransfer::commit(const ApplyContext& ctx, const pn::ContentCommit& op) {
    if (!s_ || !s_->out) return fail("content transfer is not open", EINVAL);
    State& s = *s_;
    auto finish_fail = [&s](std::unexpected<Error> e) {
        s.discard();
        return e;
    };
    if (s.op.encoding == pn::ContentEncoding::Delta) {
        auto r = s.patch->push({}, true, [&s](std::span<const std::uint8_t> out) { return s.write_out(out); });
        if (!r) return finish_fail(op_error(fmt::format("delta ({})", r.error().message), s.op.path, r.error().code ? r.error().code : EINVAL));
    }
    if (s.written != s.op.size)
        return finish_fail(op_error(fmt::format("verify (size {} != announced {})", s.written, s.op.size), s.op.path, EIO));
    if (s.hash.digest() != op.hash)
        return finish_fail(op_error("verify (content hash mismatch)", s.op.path, EIO));
    // Drop blocks fallocate reserved beyond the content (delta size known only now).
    if (::ftruncate(s.out.get(), static_cast<off_t>(s.written)) != 0) return finish_fail(op_error("truncate", s.op.path, errno));
    if (auto r = set_owner_mode(ctx, s.out.get(), s.op.uid, s.op.gid, s.op.mode, "write", s.op.path); !r) return finish_fail(std::unexpected(r.error()));
    struct timespec ts[2] = {{s.op.atime.sec, static_cast<long>(s.op.atime.nsec)},
                             {s.op.mtime.sec, static_cast<long>(s.op.mtime.nsec)}};
    if (::futimens(s.out.get(), ts) != 0) return finish_fail(op_error("utimes", s.op.path, errno));
    if (::renameat(s.parent.get(), s.tmp.c_str(), s.parent.get(), s.name.c_str()) != 0)
        return finish_fail(op_error("rename into place", s.op.path, errno));
    s.tmp.clear();
    s.out.reset();
    ctx.touched->add(s.op.path);
    ctx.touched->add_parent(s.op.path);
    return {};
}

void ContentTransfer::abort() noexcept {
    if (s_) s_->discard();
}

}  // namespace sfs::server::native
