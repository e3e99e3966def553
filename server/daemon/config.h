// syncfsd's view of its configuration file: typed, validated, defaults applied.
//
// Built from the generic config::File using the parameter table (params.h). Validation
// happens once at load, so a bad boolean or number fails the load with `file:line: why`
// and the connection code never sees an invalid value. Module-scope options written in the
// global section are defaults for every module, as in rsyncd.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/conf_file.h"
#include "common/result.h"
#include "server/daemon/params.h"

namespace sfs::server {

class ParamSet {
public:
    // Explicitly written (in this section, or inherited from the global section).
    bool is_set(P p) const { return values_[idx(p)].has_value(); }
    // The written value, else the table default, else nullopt.
    std::optional<std::string> raw(P p) const;
    std::string str(P p) const { return raw(p).value_or(""); }
    bool flag(P p) const;                  // boolean; unset tristate reads as false
    std::optional<bool> tristate(P p) const;
    long long number(P p) const;
    void set(P p, std::string value) { values_[idx(p)] = std::move(value); }

private:
    static std::size_t idx(P p) { return static_cast<std::size_t>(p); }
    std::array<std::optional<std::string>, kParamCount> values_;
};

struct ModuleConfig {
    std::string name;
    int line = 0;
    ParamSet params;
};

struct DaemonConfig {
    std::string path;
    ParamSet global;
    std::vector<ModuleConfig> modules;  // file order (the listing order)

    const ModuleConfig* find(std::string_view name) const;
};

// Builds the typed config. Unknown options and misplaced global options are appended to
// `warnings` as `file:line: ...` strings; malformed values fail.
Result<DaemonConfig> build_config(const config::File& file, std::vector<std::string>& warnings);

// load + build.
Result<DaemonConfig> load_config(const std::string& path, std::vector<std::string>& warnings);

}  // namespace sfs::server
