#include "server/daemon/privileges.h"
#include "server/daemon/trusted_path.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace sfs::server {
namespace {

std::unexpected<Refusal> refuse(std::string client, std::string detail) {
    return std::unexpected<Refusal>(Refusal{std::move(client), std::move(detail)});
}

std::optional<uid_t> to_uid(const std::string& s) {
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return static_cast<uid_t>(std::stoul(s));
    passwd pw{};
    passwd* res = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(s.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
    return pw.pw_uid;
}

std::optional<gid_t> to_gid(const std::string& s) {
    if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return static_cast<gid_t>(std::stoul(s));
    group gr{};
    group* res = nullptr;
    std::vector<char> buf(16384);
    if (::getgrnam_r(s.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
    return gr.gr_gid;
}

}  // namespace

std::expected<ModuleEnv, Refusal> enter_module(const ModuleConfig& module) {
    const ParamSet& p = module.params;
    const std::string path = p.str(P::path);
    ModuleEnv env;
    const bool root = ::geteuid() == 0;

    // Resolve ids before a chroot hides /etc/passwd.
    uid_t uid = ::geteuid();
    std::vector<gid_t> gids;
    if (root) {
        std::string uname = p.is_set(P::uid) ? p.str(P::uid) : "nobody";
        auto u = to_uid(uname);
        if (!u) return refuse("invalid uid " + uname, "module [" + module.name + "]: unknown uid '" + uname + "'");
        uid = *u;
        std::string glist = p.is_set(P::gid) ? p.str(P::gid) : "";
        if (glist.empty()) {
            auto g = to_gid("nogroup");
            if (!g) g = to_gid("nobody");
            if (!g) return refuse("invalid gid setting.", "no 'nogroup' group for the default gid");
            gids.push_back(*g);
        } else {
            std::size_t pos = 0;
            while (pos < glist.size()) {
                std::size_t s = glist.find_first_not_of(" ,\t", pos);
                if (s == std::string::npos) break;
                std::size_t e = glist.find_first_of(" ,\t", s);
                std::string name = glist.substr(s, e == std::string::npos ? std::string::npos : e - s);
                pos = e == std::string::npos ? glist.size() : e;
                if (name == "*") {
                    // rsyncd: every group the module's uid is a member of, primary first.
                    struct passwd pw {}, *res = nullptr;
                    std::string buf(16384, '\0');
                    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || !res)
                        return refuse("invalid gid *", "module [" + module.name + "]: gid = * needs a named uid");
                    int n = 256;
                    std::vector<gid_t> all(static_cast<std::size_t>(n));
                    if (::getgrouplist(pw.pw_name, pw.pw_gid, all.data(), &n) < 0 || n <= 0)
                        return refuse("invalid gid *", "module [" + module.name + "]: more than 256 groups for " + pw.pw_name);
                    gids.insert(gids.end(), all.begin(), all.begin() + n);
                    continue;
                }
                auto g = to_gid(name);
                if (!g) return refuse("invalid gid " + name, "module [" + module.name + "]: unknown gid '" + name + "'");
                gids.push_back(*g);
            }
            if (gids.empty()) return refuse("invalid gid setting.", "empty gid list");
        }
    }

    // rsyncd's "/./" form: chroot to the part before it, serve the part after it.
    std::string jail = path, inner;
    if (auto dot = path.find("/./"); dot != std::string::npos) {
        jail = dot == 0 ? "/" : path.substr(0, dot);
        inner = path.substr(dot + 3);
    }

    if (std::string bad = untrusted_symlink(path); !bad.empty())
        return refuse("chdir failed", "module [" + module.name + "]: path component " + bad +
                                          " is a symlink owned by another user; not followed");
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || ::chdir(path.c_str()) != 0)
        return refuse("chdir failed", "module [" + module.name + "]: chdir " + path + ": " + std::strerror(errno));

    // `use chroot` unset: chroot when we can (root), as rsync 3.2+ does.
    std::optional<bool> want_chroot = p.tristate(P::use_chroot);
    bool do_chroot = want_chroot.value_or(root);
    if (do_chroot) {
        if (::chroot(jail.c_str()) != 0 || ::chdir(("/" + inner).c_str()) != 0)
            return refuse("chroot failed", "module [" + module.name + "]: chroot " + jail + ": " + std::strerror(errno));
        env.chrooted = true;
        env.root = "/" + inner;
        while (env.root.size() > 1 && env.root.back() == '/') env.root.pop_back();
    } else {
        env.root = path;
    }

    if (root) {
        if (::setgroups(gids.size(), gids.data()) != 0)
            return refuse("setgroups failed", std::string("setgroups: ") + std::strerror(errno));
        if (::setgid(gids.front()) != 0)
            return refuse("setgid failed", std::string("setgid: ") + std::strerror(errno));
        if (::setuid(uid) != 0)
            return refuse("setuid failed", std::string("setuid: ") + std::strerror(errno));
    }
    env.am_root = ::geteuid() == 0;
    return env;
}

}  // namespace sfs::server
