// %VAR% references in module parameters (rsync loadparm.c expand_vars()).
//
// `path = /home/%RSYNC_USER_NAME%` and the exec hooks may name environment variables; the
// connection expands them once the client is authenticated, from an explicit environment
// (HookEnv: the daemon's environment plus RSYNC_MODULE_NAME, RSYNC_MODULE_PATH,
// RSYNC_HOST_ADDR, RSYNC_HOST_NAME, RSYNC_USER_NAME, RSYNC_PID), never by mutating the
// process environment. A reference is `%` + a name starting with an upper-case letter + `%`;
// an unknown name or any other text stays as written.
//
// For a command a shell runs (`for_shell`), an RSYNC_* value may come from the peer. It is
// quoted for the shell-quote context it lands in, and, because a hook may re-parse the word
// in a nested shell (`sh -c '... %RSYNC_USER_NAME% ...'`) where no quoting survives, a value
// holding any shell-active character (rsync's set: ' " ` $ \ ; & | < > ( ) * ? [ ] # space
// ! ~ { } and control bytes) refuses the whole expansion:
// "refusing to run shell hook: %NAME% holds a shell metacharacter" — the hook may be an
// access check, so it is never skipped silently.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "common/result.h"

namespace sfs::server {

using HookEnv = std::map<std::string, std::string, std::less<>>;

// The process environment as a HookEnv (the base every hook environment starts from).
HookEnv process_environment();

// Expands %VAR% references in `str`. Fails only with `for_shell` (the refusal above) or
// when the result would exceed 64 KiB.
Result<std::string> expand_vars(std::string_view str, const HookEnv& env, bool for_shell);

}  // namespace sfs::server
