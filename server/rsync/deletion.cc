// --delete for a push: delete_in_dir() for every directory of the received list, before
// the transfer as protocol 27 does, sparing excluded names and stopping on sender I/O errors.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "protocol/rsync_match.h"
#include "server/rsync/filter_dirs.h"
#include "server/rsync/push.h"

namespace sfs::server::rsync {

// Removes `path` (a directory recursively). Returns false on error.
bool Push::remove_tree(int parent, const std::string& name, const std::string& shown) {
    struct stat st {};
    if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return false;
        DIR* d = fdopendir(fd);
        if (!d) {
            ::close(fd);
            return false;
        }
        std::vector<std::string> names;
        while (dirent* de = readdir(d)) {
            std::string n = de->d_name;
            if (n != "." && n != "..") names.push_back(n);
        }
        bool ok = true;
        for (const auto& n : names) ok = remove_tree(dirfd(d), n, shown + "/" + n) && ok;
        closedir(d);
        if (!ok) return false;
        if (unlinkat(parent, name.c_str(), AT_REMOVEDIR) < 0) {
            ctx.error("rsync: delete_file: rmdir \"" + shown + "\" failed: " + errstr(errno));
            return false;
        }
        return true;
    }
    if (o().backup) {
        // -b: the deleted file goes to its backup path instead of away.
        std::string rel = shown;
        if (!dest.empty() && dest != "." && rel.starts_with(dest + "/")) rel.erase(0, dest.size() + 1);
        return make_backup(parent, name, rel);
    }
    if (unlinkat(parent, name.c_str(), 0) < 0) {
        ctx.error("rsync: delete_file: unlink \"" + shown + "\" failed: " + errstr(errno));
        return false;
    }
    return true;
}

// delete_in_dir() for every directory of the list (delete-before, as protocol 27 does).
void Push::delete_pass() {
    // With -d but no -r only the transfer roots (top directories) had their contents sent.
    if (!o().delete_mode || !(o().recurse || o().xfer_dirs) || !local_name.empty()) return;
    if (sender_io_error && !o().ignore_errors && !ctx.module->ignore_errors) {
        ctx.error("IO error encountered -- skipping file deletion");
        return;
    }
    std::set<std::string> names;
    for (const auto& e : list)
        if (e.active) names.insert(e.name);
    // -R: the parent directories a name brings along (implied dirs) had no contents sent;
    // only the transfer roots and what lies below them are content dirs (flist.c
    // recv_file_entry in_del_hier, protocol < 30).
    std::vector<std::string> roots;
    if (o().relative)
        for (const auto& e : list)
            if (e.active && S_ISDIR(e.mode) && e.top_dir) roots.push_back(e.name);
    auto content_dir = [&](const std::string& name) {
        for (const auto& r : roots)
            if (r == "." || name == r || name.starts_with(r + "/")) return true;
        return false;
    };
    // The client's dir-merge rules, read from the destination's directories (rsync
    // change_local_filter_dir() in delete_in_dir()).
    std::optional<DirFilterStack> dirs;
    if (!ctx.filters.dir_merges().empty()) dirs.emplace(ctx.filters, module_merge_reader(ctx));
    const auto local_of = [this](const std::string& wire) { return join_path(dest, wire); };
    for (const auto& e : list) {
        if (!e.active || !S_ISDIR(e.mode)) continue;
        if (!o().recurse && !e.top_dir) continue;
        if (o().relative && !content_dir(e.name)) continue;
        std::string local = join_path(dest, e.name);
        if (dirs) {
            if (auto r = dirs->move_to(e.name, local_of); !r) {
                // Without the client's protect rules nothing may be deleted.
                ctx.error("rsync: " + r.error().message + " -- skipping file deletion");
                return;
            }
        }
        const bool via_link = dest_via_link && e.name == ".";   // followed, still beneath the root
        auto fd = ctx.root.open_beneath(local, O_RDONLY | O_DIRECTORY | (via_link ? 0 : O_NOFOLLOW));
        if (!fd) continue;
        int dfd = fd->release();
        DIR* d = fdopendir(dfd);
        if (!d) {
            ::close(dfd);
            continue;
        }
        std::vector<std::pair<std::string, bool>> doomed;
        while (dirent* de = readdir(d)) {
            std::string n = de->d_name;
            if (n == "." || n == "..") continue;
            std::string wire = e.name == "." ? n : e.name + "/" + n;
            if (names.contains(wire)) continue;
            struct stat st {};
            if (fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
            bool is_dir = S_ISDIR(st.st_mode);
            if (!o().delete_excluded && ctx.filters.excluded(wire, is_dir, dirs ? &*dirs : nullptr)) continue;
            if (ctx.daemon_excluded(join_path(dest, wire), is_dir)) continue;   // never deletable
            doomed.emplace_back(n, is_dir);
        }
        for (const auto& [n, is_dir] : doomed) {
            std::string wire = e.name == "." ? n : e.name + "/" + n;
            if (o().max_delete >= 0 && deletions >= o().max_delete) {
                ctx.info("Deletions stopped due to --max-delete limit");
                break;
            }
            ++deletions;
            // -i (the client sent --log-format=%i): below protocol 29 there is no
            // MSG_DELETED, so the itemized line is formatted here, as the client shows it.
            if (o().log_format.find("%i") != std::string::npos)
                ctx.info("*deleting   " + wire + (is_dir ? "/" : ""));
            else if (o().verbose)
                ctx.info("deleting " + wire + (is_dir ? "/" : ""));
            if (!o().dry_run) remove_tree(dirfd(d), n, join_path(dest, wire));
        }
        closedir(d);
    }
}

}  // namespace sfs::server::rsync
