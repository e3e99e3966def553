// system_id_lookup(): IdNameLookup over the passwd/group databases (getpw*_r / getgr*_r).
#include <grp.h>
#include <pwd.h>

#include <string>

#include "server/rsync/session.h"

namespace sfs::server {

namespace {

class SystemIdLookup final : public IdNameLookup {
public:
    std::optional<std::string> user_name(std::uint32_t uid) override {
        struct passwd pw {}, *res = nullptr;
        std::string buf(16384, '\0');
        if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
        return std::string(pw.pw_name);
    }
    std::optional<std::string> group_name(std::uint32_t gid) override {
        struct group gr {}, *res = nullptr;
        std::string buf(16384, '\0');
        if (getgrgid_r(gid, &gr, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
        return std::string(gr.gr_name);
    }
    std::optional<std::uint32_t> user_id(const std::string& name) override {
        struct passwd pw {}, *res = nullptr;
        std::string buf(16384, '\0');
        if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
        return pw.pw_uid;
    }
    std::optional<std::uint32_t> group_id(const std::string& name) override {
        struct group gr {}, *res = nullptr;
        std::string buf(16384, '\0');
        if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res) != 0 || !res) return std::nullopt;
        return gr.gr_gid;
    }
};

}  // namespace

IdNameLookup& system_id_lookup() {
    static SystemIdLookup lookup;   // stateless
    return lookup;
}

}  // namespace sfs::server
