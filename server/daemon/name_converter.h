// `name converter` (rsync clientserver.c namecvt_call(), uidlist.c): a helper program the
// daemon starts once per connection, before it enters the module (so it runs as the
// daemon's user, outside any chroot, where /etc/passwd is still visible), and asks over a
// pipe for every user/group name <-> id the transfer needs:
//     "uid N" / "gid N"      -> a name, or an empty line when unknown
//     "usr NAME" / "grp NAME" -> a decimal id, or an empty line when unknown
// Like a pre-xfer command it first gets RSYNC_REQUEST / RSYNC_ARGn; its stdin stays open.
//
// Bounds and failures: a name sent to it has no control characters and at most 255 bytes
// (else the name counts as unknown); a reply is one line of at most 1024 bytes within
// kReplyTimeoutMs (a helper that stops reading its requests runs into the same deadline
// once the pipe is full). A reply that is not a valid id (empty, not all digits, > 2^32-1), or an
// empty/invalid name, means "unknown", so an id stays numeric as rsync does (never 0 by
// accident). If the program dies, stalls or floods, it is stopped, the error is logged and
// told to the client once, and every later lookup is "unknown" (ids are kept numerically);
// the transfer itself goes on.
#pragma once

#include <mutex>
#include <optional>
#include <string>

#include "server/daemon/xfer_exec.h"
#include "server/rsync/session.h"

namespace sfs::server {

class NameConverter final : public IdNameLookup {
public:
    static constexpr int kReplyTimeoutMs = 30000;
    static constexpr std::size_t kMaxReply = 1024;

    // `exec`: the started child (PreXferExec::start with own_group) after begin().
    NameConverter(PreXferExec exec, std::string module, std::string command)
        : exec_(std::move(exec)), module_(std::move(module)), command_(std::move(command)) {}
    ~NameConverter() override { exec_.stop(2000); }

    std::optional<std::string> user_name(std::uint32_t uid) override { return name_of("uid", uid); }
    std::optional<std::string> group_name(std::uint32_t gid) override { return name_of("gid", gid); }
    std::optional<std::uint32_t> user_id(const std::string& name) override { return id_of("usr", name); }
    std::optional<std::uint32_t> group_id(const std::string& name) override { return id_of("grp", name); }
    std::string take_failure() override;

private:
    std::optional<std::string> ask(const std::string& line);
    std::optional<std::string> name_of(const char* cmd, std::uint32_t id);
    std::optional<std::uint32_t> id_of(const char* cmd, const std::string& name);

    std::mutex mu_;   // the session's threads may both look up names
    PreXferExec exec_;
    std::string module_, command_;
    bool dead_ = false;
    std::string failure_;
};

}  // namespace sfs::server
