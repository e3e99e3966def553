// What the fallback watcher tells the rest of syncfs about changes made to SOURCE outside
// the mount (see docs/watcher.md).
//
// Contract:
//  - Paths are relative to SOURCE, without a leading '/'; SOURCE itself is "".
//  - A change is a hint, not an exact op log: "path may differ from the mirror now; make the
//    mirror's copy equal SOURCE's *current* state of path". Names are resolved when the
//    watcher reads the event, so a later rename may already be reflected in them.
//  - Overflow means "events for the subtree `path` were lost": the receiver must reconcile
//    that whole subtree (path "" = all of SOURCE). It is delivered only after the watcher
//    re-armed itself, so a reconcile started on receipt misses nothing.
//  - on_outside_change() is called on the watcher's own thread, one call at a time. It must
//    be quick (mark dirty, queue); a slow sink makes the kernel queue overflow, which is
//    safe (an Overflow follows) but costs a reconcile.
#pragma once

#include <cstdint>
#include <string>

namespace sfs::repl::watch {

struct OutsideChange {
    enum class Kind : std::uint8_t {
        Modified,    // file content changed (write, truncate, close after write)
        Created,     // a non-directory appeared at path (create, mknod, symlink, link, moved in)
        DirCreated,  // a directory appeared at path; entries found inside follow as Created/DirCreated
        Deleted,     // path is gone (unlink, rmdir, moved out of SOURCE); for a directory: its subtree
        Renamed,     // path moved to path2, both inside SOURCE (path2 replaced if it existed)
        Attrib,      // metadata changed (mode, owner, times, xattrs, link count)
        Overflow,    // events lost: reconcile the subtree `path`
    };
    Kind kind = Kind::Modified;
    std::string path;
    std::string path2;  // Renamed only: the new name
    bool is_dir = false;

    bool operator==(const OutsideChange&) const = default;
};

const char* to_string(OutsideChange::Kind kind) noexcept;

class OutsideChangeSink {
public:
    virtual ~OutsideChangeSink() = default;
    virtual void on_outside_change(const OutsideChange& change) noexcept = 0;
};

}  // namespace sfs::repl::watch
