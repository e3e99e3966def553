// The rsyncd.conf reader (common/config) and syncfsd's parameter table (server/daemon).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/config/conf_file.h"
#include "server/daemon/config.h"
#include "server/daemon/params.h"

namespace sfs::server {
namespace {

Result<DaemonConfig> build(const std::string& text, std::vector<std::string>& warnings) {
    auto f = config::parse(text, "t.conf");
    if (!f) return std::unexpected(f.error());
    return build_config(*f, warnings);
}

TEST(DaemonConfig, SectionsCommentsContinuationsAndKeyForms) {
    const char* text =
        "# global\n"
        "; also a comment\n"
        "Pid_File = /run/x.pid\n"
        "motd file = /etc/motd\n"
        "[web]\n"
        "\tpath = /srv/web\n"
        "\tcomment = a long \\\n"
        "\t   comment\n"
        "\tREAD ONLY = no\n"
        "\tread_only = no\n"
        "\thosts allow = 10.0.0.0/8 \\\n"
        "   192.168.1.1\n"
        "\tmaxconnections = 3\n"
        "[other]\n"
        "path = /srv/other\n";
    std::vector<std::string> warnings;
    auto cfg = build(text, warnings);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_TRUE(warnings.empty());
    EXPECT_EQ(cfg->global.str(P::pid_file), "/run/x.pid");
    ASSERT_EQ(cfg->modules.size(), 2u);
    const ModuleConfig* web = cfg->find("web");
    ASSERT_NE(web, nullptr);
    EXPECT_EQ(web->params.str(P::comment), "a long comment");
    EXPECT_FALSE(web->params.flag(P::read_only));
    EXPECT_EQ(web->params.str(P::hosts_allow), "10.0.0.0/8 192.168.1.1");
    EXPECT_EQ(web->params.number(P::max_connections), 3);
    const ModuleConfig* other = cfg->find("other");
    ASSERT_NE(other, nullptr);
    EXPECT_TRUE(other->params.flag(P::read_only)) << "rsyncd default: read only = yes";
    EXPECT_TRUE(other->params.flag(P::list));
    EXPECT_EQ(other->params.str(P::lock_file), "/run/syncfsd.lock");
    EXPECT_FALSE(other->params.tristate(P::use_chroot).has_value());
    EXPECT_EQ(cfg->find("Web"), nullptr) << "module names are case-sensitive, as in rsyncd";
}

TEST(DaemonConfig, BooleansInEveryForm) {
    for (auto [word, value] : std::vector<std::pair<std::string, bool>>{
             {"yes", true}, {"YES", true}, {"true", true}, {"1", true},
             {"no", false}, {"False", false}, {"0", false}}) {
        std::vector<std::string> w;
        auto cfg = build("[m]\npath = /x\nread only = " + word + "\n", w);
        ASSERT_TRUE(cfg) << word;
        EXPECT_EQ(cfg->modules[0].params.flag(P::read_only), value) << word;
    }
}

TEST(DaemonConfig, GlobalModuleOptionsAreModuleDefaults) {
    std::vector<std::string> w;
    auto cfg = build("read only = no\nuid = www-data\nhosts deny = *\n[a]\npath = /a\n[b]\npath = /b\nread only = yes\n", w);
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_FALSE(cfg->find("a")->params.flag(P::read_only));
    EXPECT_TRUE(cfg->find("b")->params.flag(P::read_only));
    EXPECT_EQ(cfg->find("a")->params.str(P::uid), "www-data");
    EXPECT_EQ(cfg->find("b")->params.str(P::hosts_deny), "*");
}

TEST(DaemonConfig, UnknownAndMisplacedOptionsWarnWithFileAndLine) {
    std::vector<std::string> w;
    auto cfg = build("[m]\npath = /x\nfancy feature = 1\nport = 99\n", w);
    ASSERT_TRUE(cfg);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0], "t.conf:3: unknown option 'fancy feature' ignored");
    EXPECT_EQ(w[1], "t.conf:4: global option 'port' ignored in module [m]");
}

// rsync's params.c: text after a header's `]` is dropped; `#` after a value is part of the
// value (so the annotated rsyncd.conf of many how-tos, `path = /web   # the site`, points at a
// directory that does not exist under rsyncd too): syncfsd does the same and warns. Numbers
// and booleans drop the comment (rsyncd atoi()s the number, ignores the boolean line).
TEST(DaemonConfig, TextAfterHeaderIsIgnoredAndCommentLikeValuesWarn) {
    std::vector<std::string> w;
    auto cfg = build("max connections = 10   # at most\n[web]                # the exported tree\n"
                     "path = /web   # the site\nread only = no\t# uploads\n[two] x\npath = /t\n",
                     w);
    ASSERT_TRUE(cfg) << cfg.error().message;
    ASSERT_EQ(cfg->modules.size(), 2u);
    EXPECT_EQ(cfg->modules[0].name, "web");
    EXPECT_EQ(cfg->modules[0].params.str(P::path), "/web   # the site");
    EXPECT_EQ(cfg->modules[0].params.number(P::max_connections), 10);
    EXPECT_FALSE(cfg->modules[0].params.flag(P::read_only));
    ASSERT_EQ(w.size(), 4u);
    EXPECT_EQ(w[0], "t.conf:1: 'max connections': text from '#' on ignored (rsyncd.conf has no trailing comments; "
                    "put comments on their own line)");
    EXPECT_EQ(w[1], "t.conf:3: the value of 'path' contains ' #': rsyncd.conf has no trailing comments, so it is part "
                    "of the value");
    EXPECT_EQ(w[2], "t.conf:4: 'read only': text from '#' on ignored (rsyncd.conf has no trailing comments; put "
                    "comments on their own line)");
    EXPECT_EQ(w[3], "t.conf:5: text after '[two]' ignored (as rsyncd does)");
}

TEST(DaemonConfig, MalformedLinesFailWithFileAndLine) {
    struct Case {
        std::string text, error;
    };
    for (const auto& c : std::vector<Case>{
             {"[web\npath = /x\n", "t.conf:1: section header without closing ']'"},
             {"\n\n[web]\njust words\n", "t.conf:4: expected 'name = value' or '[section]', got 'just words'"},
             {"[m]\npath = /x\nread only = perhaps\n", "t.conf:3: 'read only': expected a boolean"},
             {"[m]\npath = /x\nmax connections = -2\n", "t.conf:3: 'max connections': value -2 out of range"},
             {"port = 70000\n", "t.conf:1: 'port': value 70000 out of range"},
             {"[m]\ncomment = no path\n", "t.conf:1: module [m] has no 'path'"},
             {"[m]\npath = relative/dir\n", "t.conf:2: 'path' must be an absolute path"},
             {"[]\n", "t.conf:1: empty section name"},
             {"= value\n", "t.conf:1: missing option name"},
             {"[a]\npath = /a\\\n\\\n\n[b\n", "t.conf:5: section header without closing ']'"},
             {"&include /nonexistent/syncfsd-test.conf\n", "t.conf:1: unable to stat config file \"/nonexistent/syncfsd-test.conf\""},
             {"\n&merge\n", "t.conf:2: &merge needs a file or directory"},
             {"&frobnicate /x\n", "t.conf:1: unknown directive '&frobnicate'"},
         }) {
        std::vector<std::string> w;
        auto cfg = build(c.text, w);
        ASSERT_FALSE(cfg) << c.text;
        EXPECT_TRUE(cfg.error().message.starts_with(c.error)) << cfg.error().message << "\nwanted: " << c.error;
    }
}

TEST(DaemonConfig, ParamTableIsConsistent) {
    for (std::size_t i = 0; i < kParamCount; ++i) {
        const ParamInfo& p = kParams[i];
        auto found = find_param(config::normalize_key(p.name));
        ASSERT_TRUE(found) << p.name;
        EXPECT_EQ(static_cast<std::size_t>(*found), i) << p.name << " is declared twice or out of enum order";
        EXPECT_FALSE(p.doc.empty()) << p.name;
        if (p.default_value && (p.type == ParamType::boolean || p.type == ParamType::tristate)) {
            EXPECT_TRUE(config::parse_bool(*p.default_value)) << p.name;
        }
    }
}

// Every parameter in the table is documented in man/syncfsd.conf.5 as a `.TP` item.
TEST(DaemonConfig, EveryParameterIsInTheManPage) {
    std::ifstream f(std::string(SYNCFS_SOURCE_DIR) + "/man/syncfsd.conf.5");
    ASSERT_TRUE(f) << "man/syncfsd.conf.5 missing";
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string man = ss.str();
    for (const auto& p : kParams)
        EXPECT_NE(man.find(".B " + std::string(p.name) + "\n"), std::string::npos)
            << "parameter '" << p.name << "' is not documented in man/syncfsd.conf.5";
}

}  // namespace
}  // namespace sfs::server
