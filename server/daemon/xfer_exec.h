// `pre-xfer exec` and `post-xfer exec` (rsync clientserver.c start_pre_exec(),
// finish_pre_exec() and the post-xfer fork in rsync_module()).
//
// Design note. Both hooks run as the daemon's own user, outside the module's chroot, so
// both processes are forked before the connection enters the module:
//  - post-xfer: the connection forks; the PARENT keeps the module's connection slot, waits
//    for the child (which carries on with the transfer), runs the command with
//    RSYNC_EXIT_STATUS (the child's exit code, 0 = success) and RSYNC_RAW_STATUS (its wait
//    status), and exits. The child returns and serves the client.
//  - pre-xfer: a child is forked that waits on a pipe for the client's request and
//    arguments; once the connection has read them it writes them (NUL-terminated, an empty
//    one ends the list), the child puts them in RSYNC_REQUEST and RSYNC_ARG0.. (ARG0 is
//    "rsyncd"), runs the command with the pipe as stdin and another pipe as stdout, and the
//    connection reads that output (at most 8 KiB kept) and the exit status. A non-zero
//    status refuses the transfer with rsync's message "pre-xfer exec returned failure
//    (STATUS)" followed by the command's output.
// Commands run as `/bin/sh -c CMD`, or `$RSYNC_SHELL -c CMD` when the daemon's environment
// sets RSYNC_SHELL, with the HookEnv (var_expand.h) as their whole environment.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "common/unique_fd.h"
#include "server/daemon/var_expand.h"

namespace sfs::server {

class PreXferExec {
public:
    // Forks the waiting child. `close_fds` are closed in it (the client connection).
    // `own_group`: the child leads its own process group, so stop() can end the command too.
    static Result<PreXferExec> start(const std::string& cmd, const HookEnv& env, std::vector<int> close_fds,
                                     bool own_group = false);
    PreXferExec(PreXferExec&&) noexcept;
    PreXferExec& operator=(PreXferExec&&) = delete;
    ~PreXferExec();

    // Sends the request ("path ..." as the client named them) and the arguments, waits for
    // the command. nullopt: it succeeded; else rsync's failure text (may span lines).
    // `early exec` uses the same child: `input` follows the list on its stdin, and the
    // list starts without the "rsyncd" ARG0 (`with_arg0` false).
    std::optional<std::string> finish(const std::string& request, const std::vector<std::string>& args,
                                      const std::string& input = {}, bool with_arg0 = true);

    // `name converter` (rsync start_pre_exec + write_pre_exec_args type 2): the request and
    // arguments as finish() sends them, but the command's stdin stays open for converse().
    // False when the child is gone.
    bool begin(const std::string& request, const std::vector<std::string>& args);
    // Writes `line` (with its '\n') and reads one reply line (returned without it). An error
    // when the command is gone, does not answer within `timeout_ms`, or answers more than
    // `max_len` bytes before the newline.
    Result<std::string> converse(const std::string& line, int timeout_ms, std::size_t max_len);
    // Closes the command's stdin, waits up to `grace_ms` for it to exit, then kills its
    // process group (own_group) or it.
    void stop(int grace_ms);

private:
    PreXferExec() = default;
    pid_t pid_ = -1;
    bool own_group_ = false;
    UniqueFd args_w_, output_r_;
    std::string pending_;   // reply bytes read past the last newline
};

// Forks for the post-xfer hook (see the design note). Returns in the child only; on a
// failed fork returns the error and nothing was forked. `close_fds` are closed in the parent.
Result<void> fork_post_xfer_exec(const std::string& cmd, const HookEnv& env, std::vector<int> close_fds);

// Runs `cmd` through the shell with `env` as its environment, stdin/stdout as given (-1:
// inherited); returns the raw wait status, or -1 when it could not be started.
// die_with_parent: the shell is SIGKILLed when the calling process ends (PR_SET_PDEATHSIG).
int run_shell(const std::string& cmd, const HookEnv& env, int stdin_fd = -1, int stdout_fd = -1,
              bool die_with_parent = false);

}  // namespace sfs::server
