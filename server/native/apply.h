// The namespace and attribute mutations of the native protocol, applied beneath the module
// root. Each function is idempotent by the rules in docs/protocol.md §4 (a replay after a
// reconnect is harmless) and returns an Error whose message names the op and the
// module-relative path, with the errno in Error::code.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>

#include "common/result.h"
#include "protocol/native/messages.h"

namespace sfs::server::native {

// What a durable Barrier must fsync: module-relative paths of nodes whose data or directory
// entries changed since the last durable point. Bounded: past kMaxTracked paths it gives up
// on paths and asks for a syncfs(2) of the whole module filesystem instead.
class DurableSet {
public:
    static constexpr std::size_t kMaxTracked = 512;
    void add(std::string_view path);         // the node (its data and, for a dir, its entries)
    void add_parent(std::string_view path);  // the directory holding path's entry
    void rename(std::string_view from, std::string_view to);  // tracked paths follow a rename
    bool overflowed() const noexcept { return overflow_; }
    const std::unordered_set<std::string>& paths() const noexcept { return paths_; }
    bool empty() const noexcept { return paths_.empty() && !overflow_; }
    void clear() noexcept { paths_.clear(); overflow_ = false; }

private:
    std::unordered_set<std::string> paths_;
    bool overflow_ = false;
};

struct ApplyContext {
    int root = -1;             // O_PATH|O_DIRECTORY fd of the module root
    bool am_root = false;      // apply uid/gid, allow device nodes
    bool munge_symlinks = false;
    std::mt19937_64* rng = nullptr;  // temp-file names
    DurableSet* touched = nullptr;
};

// `.<name>.sfs.<16 hex>`: hidden, in the same directory, never longer than NAME_MAX.
std::string temp_name(std::string_view name, std::mt19937_64& rng);

// The rsyncd munge prefix (rsync's SYMLINK_PREFIX), added to symlink targets with
// `munge symlinks` and removed again when listing.
inline constexpr std::string_view kMungePrefix = "/rsyncd-munged/";

Result<void> apply(const ApplyContext& ctx, const protocol::native::Mkdir& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Create& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Mknod& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Symlink& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Link& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Rename& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Unlink& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Rmdir& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Setattr& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Setxattr& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::Removexattr& op);
Result<void> apply(const ApplyContext& ctx, const protocol::native::WriteRange& op);

// Shared with content.cc: owner (when am_root) then mode, on a node by fd.
Result<void> set_owner_mode(const ApplyContext& ctx, int fd, std::uint32_t uid, std::uint32_t gid,
                            std::uint32_t mode, std::string_view what, std::string_view path);

// "<what> \"<path>\": <strerror(err)>" as an Error carrying err.
std::unexpected<Error> op_error(std::string_view what, std::string_view path, int err);

}  // namespace sfs::server::native
