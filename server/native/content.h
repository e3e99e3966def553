// Whole-file and delta replacement of one file (ContentBegin, ContentChunk*, ContentCommit).
//
// The new content is written to a temp file in the target's directory. Literal chunks are
// written as they come; delta chunks are fed to a librsync patch job whose basis is the
// mirror's current file at the path (read with pread, never modified). Commit checks the
// size and XXH3-128 the client computed, applies owner, mode and times to the temp file,
// then renames it over the name. Any failure removes the temp file: the previous file at the
// path is untouched, so a reader never sees a torn file. A transfer destroyed without a
// commit (connection lost) also removes its temp file.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"
#include "protocol/native/messages.h"
#include "server/native/apply.h"

namespace sfs::server::native {

class ContentTransfer {
public:
    static Result<ContentTransfer> begin(const ApplyContext& ctx, const protocol::native::ContentBegin& op);

    ContentTransfer(ContentTransfer&&) noexcept;
    ContentTransfer& operator=(ContentTransfer&&) noexcept;
    ~ContentTransfer();

    Result<void> chunk(std::span<const std::uint8_t> data);
    // Verifies and renames into place. The transfer is finished afterwards either way.
    Result<void> commit(const ApplyContext& ctx, const protocol::native::ContentCommit& op);
    // Discards the temp file.
    void abort() noexcept;

    std::uint64_t seq() const noexcept;

private:
    struct State;
    explicit ContentTransfer(std::unique_ptr<State> state) noexcept;
    std::unique_ptr<State> s_;
};

}  // namespace sfs::server::native
