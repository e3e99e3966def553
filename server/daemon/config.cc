#include "server/daemon/config.h"

#include <limits>

namespace sfs::server {

std::optional<std::string> ParamSet::raw(P p) const {
    if (values_[idx(p)]) return values_[idx(p)];
    if (info(p).default_value) return std::string(*info(p).default_value);
    return std::nullopt;
}

bool ParamSet::flag(P p) const {
    auto v = raw(p);
    if (!v) return false;
    auto b = config::parse_bool(*v);
    return b && *b;  // validated at load; table defaults are valid
}

std::optional<bool> ParamSet::tristate(P p) const {
    auto v = raw(p);
    if (!v) return std::nullopt;
    auto b = config::parse_bool(*v);
    return b ? std::optional<bool>(*b) : std::nullopt;
}

long long ParamSet::number(P p) const {
    auto v = raw(p);
    if (!v) return 0;
    auto n = config::parse_int(*v, 0, std::numeric_limits<int>::max());
    return n ? *n : 0;
}

const ModuleConfig* DaemonConfig::find(std::string_view name) const {
    for (const auto& m : modules)
        if (m.name == name) return &m;
    return nullptr;
}

namespace {

std::string at(const config::File& f, int line) { return f.path + ":" + std::to_string(line) + ": "; }
// An entry or section may come from an &include'd / &merge'd file.
std::string at(const config::File& f, const config::Entry& e) {
    return (e.source.empty() ? f.path : e.source) + ":" + std::to_string(e.line) + ": ";
}
std::string at(const config::File& f, const config::Section& s) {
    return (s.source.empty() ? f.path : s.source) + ":" + std::to_string(s.line) + ": ";
}

Result<void> validate(const config::File& f, const config::Entry& e, P p) {
    const ParamInfo& pi = info(p);
    switch (pi.type) {
    case ParamType::boolean:
    case ParamType::tristate:
        if (auto b = config::parse_bool(e.value); !b)
            return fail(at(f, e) + "'" + e.key + "': " + b.error().message);
        break;
    case ParamType::integer: {
        long long max = p == P::port ? 65535 : std::numeric_limits<int>::max();
        if (auto n = config::parse_int(e.value, 0, max); !n)
            return fail(at(f, e) + "'" + e.key + "': " + n.error().message);
        break;
    }
    case ParamType::path:
        if (!e.value.empty() && e.value.front() != '/')
            return fail(at(f, e) + "'" + e.key + "' must be an absolute path, got '" + e.value + "'");
        break;
    case ParamType::string:
        break;
    }
    return {};
}

// Applies one section's entries to `into`. In the global section every option is accepted
// (module options become defaults); in a module section global options only warn.
Result<void> apply(const config::File& f, const config::Section& s, bool is_global, ParamSet& into,
                   std::vector<std::string>& warnings, bool inherited = false) {
    for (const auto& e : inherited ? s.inherited : s.entries) {
        auto p = find_param(e.norm_key);
        if (!p) {
            warnings.push_back(at(f, e) + "unknown option '" + e.key + "' ignored");
            continue;
        }
        if (!is_global && info(*p).scope == Scope::global) {
            // An &include'd file's global options are popped after it (rsync): no effect.
            if (inherited) continue;
            warnings.push_back(at(f, e) + "global option '" + e.key + "' ignored in module [" +
                               s.name + "]");
            continue;
        }
        // rsyncd.conf has no trailing comments: rsync keeps `value   # text` whole. For a
        // number or a boolean that leaves nothing usable (rsyncd atoi()s the number and
        // ignores such a boolean line, keeping the default), so the text is dropped as the
        // comment it was meant to be; other values keep it, as with rsyncd, because
        // `path = /web   # the site` may be deliberate. Both are reported.
        config::Entry entry = e;
        const auto hash = entry.value.find('#');
        if (hash != std::string::npos && hash > 0 && (entry.value[hash - 1] == ' ' || entry.value[hash - 1] == '\t')) {
            const ParamType type = info(*p).type;
            if (type == ParamType::boolean || type == ParamType::tristate || type == ParamType::integer) {
                entry.value.resize(entry.value.find_last_not_of(" \t", hash - 1) + 1);
                warnings.push_back(at(f, e) + "'" + e.key + "': text from '#' on ignored (rsyncd.conf has no "
                                   "trailing comments; put comments on their own line)");
            } else {
                warnings.push_back(at(f, e) + "the value of '" + e.key + "' contains ' #': rsyncd.conf has no "
                                   "trailing comments, so it is part of the value");
            }
        }
        if (auto ok = validate(f, entry, *p); !ok) return std::unexpected(ok.error());
        into.set(*p, entry.value);
    }
    return {};
}

}  // namespace

Result<DaemonConfig> build_config(const config::File& file, std::vector<std::string>& warnings) {
    DaemonConfig cfg;
    cfg.path = file.path;
    if (auto ok = apply(file, file.global, true, cfg.global, warnings); !ok)
        return std::unexpected(ok.error());

    for (const auto& s : file.sections) {
        ModuleConfig* m = nullptr;
        for (auto& existing : cfg.modules)
            if (existing.name == s.name) m = &existing;
        if (!s.trailing.empty() && s.trailing.front() != '#' && s.trailing.front() != ';')
            warnings.push_back(at(file, s) + "text after '[" + s.name + "]' ignored (as rsyncd does)");
        if (m) {
            warnings.push_back(at(file, s) + "module [" + s.name + "] repeated; options merged");
        } else {
            cfg.modules.push_back(ModuleConfig{s.name, s.line, {}});
            m = &cfg.modules.back();
            // Module options from the global section are this module's defaults.
            for (std::size_t i = 0; i < kParamCount; ++i) {
                P p = static_cast<P>(i);
                if (kParams[i].scope == Scope::module && cfg.global.is_set(p))
                    m->params.set(p, *cfg.global.raw(p));
            }
        }
        if (auto ok = apply(file, s, false, m->params, warnings, true); !ok)
            return std::unexpected(ok.error());
        if (auto ok = apply(file, s, false, m->params, warnings); !ok)
            return std::unexpected(ok.error());
    }
    for (const auto& m : cfg.modules) {
        auto path = m.params.raw(P::path);
        if (!path || path->empty())
            return fail(at(file, m.line) + "module [" + m.name + "] has no 'path'");
        if (m.name.size() > 255)
            return fail(at(file, m.line) + "module name longer than 255 bytes");
    }
    return cfg;
}

Result<DaemonConfig> load_config(const std::string& path, std::vector<std::string>& warnings) {
    auto file = config::load(path);
    if (!file) return std::unexpected(file.error());
    return build_config(*file, warnings);
}

}  // namespace sfs::server
