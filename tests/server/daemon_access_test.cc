// Access control pieces of the daemon: hosts allow/deny, authentication, argument reading.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "common/unique_fd.h"
#include "server/daemon/args.h"
#include "server/daemon/auth.h"
#include "server/daemon/host_access.h"

namespace sfs::server {
namespace {

bool allowed(const std::string& allow, const std::string& deny, const std::string& addr) {
    Peer p;
    p.address = addr;
    return host_allowed(allow, deny, p, false);
}

TEST(DaemonHosts, RsyncdAllowDenySemantics) {
    EXPECT_TRUE(allowed("", "", "10.1.2.3")) << "no lists: allow";
    EXPECT_TRUE(allowed("10.1.2.3", "", "10.1.2.3"));
    EXPECT_FALSE(allowed("10.1.2.3", "", "10.1.2.4")) << "allow list alone refuses the rest";
    EXPECT_TRUE(allowed("10.1.2.3", "*", "10.1.2.3")) << "allow is checked before deny";
    EXPECT_FALSE(allowed("10.1.2.3", "*", "10.1.2.4"));
    EXPECT_TRUE(allowed("10.1.2.3", "192.168.0.0/16", "10.9.9.9")) << "allow+deny: neither matches -> allow";
    EXPECT_FALSE(allowed("", "10.1.2.3", "10.1.2.3"));
    EXPECT_TRUE(allowed("", "10.1.2.3", "10.1.2.4"));
}

TEST(DaemonHosts, AddressForms) {
    EXPECT_TRUE(allowed("127.0.0.0/8", "", "127.0.0.2"));
    EXPECT_FALSE(allowed("127.0.0.0/31", "", "127.0.0.2"));
    EXPECT_TRUE(allowed("127.0.0.0/255.255.255.252", "", "127.0.0.3"));
    EXPECT_FALSE(allowed("127.0.0.0/255.255.255.252", "", "127.0.0.4"));
    EXPECT_TRUE(allowed("127.0.0.*", "", "127.0.0.9"));
    EXPECT_TRUE(allowed("127.0.0.?", "", "127.0.0.9"));
    EXPECT_FALSE(allowed("127.0.0.?", "", "127.0.0.19"));
    EXPECT_TRUE(allowed("10.0.0.1, 127.0.0.1\t::1", "", "::1"));
    EXPECT_TRUE(allowed("2001:db8::/32", "", "2001:db8:1::5"));
    EXPECT_FALSE(allowed("2001:db8::/32", "", "2001:db9::5"));
    EXPECT_TRUE(allowed("2001:DB8::1", "", "2001:db8::1")) << "case-insensitive";
    EXPECT_FALSE(allowed("127.0.0.1", "", "::1")) << "families do not mix";
    EXPECT_TRUE(allowed("127.0.0.1", "", "::ffff:127.0.0.1")) << "IPv4-mapped peers compare as IPv4";
}

TEST(DaemonHosts, HostNamesUseReverseLookupOnlyWhenNeeded) {
    Peer p;
    p.address = "127.0.0.1";
    EXPECT_TRUE(host_allowed("127.0.0.1", "", p, false));
    EXPECT_FALSE(p.looked_up) << "numeric patterns need no DNS";
    EXPECT_EQ(p.display_name(), "UNDETERMINED");
    Peer q;
    q.address = "127.0.0.1";
    EXPECT_TRUE(host_allowed("localhost", "", q, true));  // reverse or forward lookup of localhost
    EXPECT_TRUE(q.looked_up);
    Peer r;
    r.address = "127.0.0.1";
    EXPECT_FALSE(host_allowed("", "no-such-host.invalid", r, true)) << "unresolvable deny name fails closed";
}

TEST(DaemonAuth, Base64WithoutPaddingMatchesRsync) {
    EXPECT_EQ(base64_nopad(""), "");
    EXPECT_EQ(base64_nopad("f"), "Zg");
    EXPECT_EQ(base64_nopad("fo"), "Zm8");
    EXPECT_EQ(base64_nopad("foo"), "Zm9v");
    EXPECT_EQ(base64_nopad("foobar"), "Zm9vYmFy");
    auto c = make_challenge();
    ASSERT_TRUE(c);
    EXPECT_EQ(c->size(), 22u);
    EXPECT_NE(*c, *make_challenge());
}

std::string b64_hex(const std::string& hex) {
    std::string bytes;
    for (std::size_t i = 0; i < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return base64_nopad(bytes);
}

TEST(DaemonAuth, DigestsAreKnownAnswers) {
    // RFC 1320 / RFC 1321: MD4("abc"), MD5("abc"); password "a" + challenge "bc".
    EXPECT_EQ(auth_response(AuthDigest::md4, "a", "bc"), b64_hex("a448017aaf21d8525fc10ae87aa6729d"));
    EXPECT_EQ(auth_response(AuthDigest::md5, "a", "bc"), b64_hex("900150983cd24fb0d6963f7d28e17f72"));
    // Old MD4 hashes a 4-byte zero seed first (rsync sum_init() for CSUM_MD4_OLD).
    // Old MD4 hashes a 4-byte zero seed first (rsync sum_init() for CSUM_MD4_OLD):
    // MD4("\0\0\0\0abc"), computed with `openssl dgst -md4`.
    EXPECT_EQ(auth_response(AuthDigest::md4_old, "a", "bc"), b64_hex("280f4da968ef17b2ca2fb5d289874be9"));
    // FIPS 180 test vectors for "abc".
    EXPECT_EQ(auth_response(AuthDigest::sha1, "a", "bc"), b64_hex("a9993e364706816aba3e25717850c26c9cd0d89d"));
    EXPECT_EQ(auth_response(AuthDigest::sha256, "a", "bc"),
              b64_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    EXPECT_EQ(auth_response(AuthDigest::sha512, "a", "bc"),
              b64_hex("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"));
}

TEST(DaemonAuth, DigestNegotiation) {
    EXPECT_EQ(*choose_auth_digest(std::string("sha512 sha256 sha1 md5 md4"), 27), AuthDigest::sha512);
    EXPECT_EQ(*choose_auth_digest(std::string("md5 md4"), 27), AuthDigest::md5);
    EXPECT_EQ(*choose_auth_digest(std::string("sha1 md5"), 31), AuthDigest::sha1);
    EXPECT_EQ(*choose_auth_digest(std::string("md4"), 31), AuthDigest::md4);
    EXPECT_EQ(*choose_auth_digest(std::nullopt, 29), AuthDigest::md4_old);
    EXPECT_EQ(*choose_auth_digest(std::nullopt, 30), AuthDigest::md5);
    auto none = choose_auth_digest(std::string("xxh64"), 31);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().message,
              "your client does not support one of our daemon-auth checksums: sha512 sha256 sha1 md5 md4");
    // `auth digest` floors rank names strongest first.
    EXPECT_EQ(auth_digest_rank("sha512"), 0);
    EXPECT_EQ(auth_digest_rank("MD5"), 3);
    EXPECT_EQ(auth_digest_rank(AuthDigest::md4_old), 4);
    EXPECT_EQ(auth_digest_rank("no-such-digest"), -1);
}

class AuthFiles : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/syncfsd-auth.XXXXXX";
        dir = ::mkdtemp(tmpl);
        secrets = dir + "/secrets";
        std::ofstream(secrets) << "# comment\nalice:wonderland\r\n@staff:groupsecret\nbob:builder\n";
        ::chmod(secrets.c_str(), 0600);
    }
    void TearDown() override {
        ::unlink(secrets.c_str());
        ::rmdir(dir.c_str());
    }
    AuthRequest req(const std::string& users) {
        return AuthRequest{"m", users, secrets, true, AuthDigest::md5, "CHALLENGEchallenge0123"};
    }
    std::string line(const std::string& user, const std::string& pw) {
        return user + " " + auth_response(AuthDigest::md5, pw, "CHALLENGEchallenge0123");
    }
    std::string dir, secrets;
};

TEST_F(AuthFiles, UsersRulesAndSecrets) {
    EXPECT_TRUE(check_auth(req("alice bob"), line("alice", "wonderland"))) << "CRLF secrets line";
    EXPECT_TRUE(check_auth(req("alice,bob"), line("bob", "builder")));
    EXPECT_TRUE(check_auth(req("a*"), line("alice", "wonderland"))) << "wildcard user rule";
    auto wrong = check_auth(req("alice"), line("alice", "guess"));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().message, "password mismatch for user 'alice'");
    auto unknown = check_auth(req("alice"), line("mallory", "wonderland"));
    ASSERT_FALSE(unknown);
    EXPECT_EQ(unknown.error().message, "no matching rule for user 'mallory'");
    auto denied = check_auth(req("alice:deny bob"), line("alice", "wonderland"));
    ASSERT_FALSE(denied);
    EXPECT_EQ(denied.error().message, "user 'alice' denied by rule");
    auto ro = check_auth(req("alice:ro"), line("alice", "wonderland"));
    ASSERT_TRUE(ro);
    EXPECT_EQ(ro->read_only, std::optional<bool>(true));
    EXPECT_FALSE(check_auth(req("alice"), "alice")) << "no response part";
    EXPECT_FALSE(check_auth(req("#*"), line("#", "x")));
}

TEST_F(AuthFiles, GroupRuleUsesGroupSecret) {
    // root is in group "root" on every Debian system.
    std::ofstream(secrets) << "@root:groupsecret\n";
    EXPECT_TRUE(check_auth(req("@root"), line("root", "groupsecret")));
    EXPECT_FALSE(check_auth(req("@root"), line("root", "other")));
}

TEST_F(AuthFiles, StrictModes) {
    ::chmod(secrets.c_str(), 0604);
    auto r = check_auth(req("alice"), line("alice", "wonderland"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("must not be other-accessible"), std::string::npos);
    auto lax = req("alice");
    lax.strict_modes = false;
    EXPECT_TRUE(check_auth(lax, line("alice", "wonderland")));
}

struct Pair {
    Pair() {
        int sv[2];
        ::socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        a.reset(sv[0]);
        b.reset(sv[1]);
    }
    UniqueFd a, b;
};

LineChannel channel(int fd, int seconds = 5) {
    return LineChannel(fd, fd, std::chrono::steady_clock::now() + std::chrono::seconds(seconds));
}

TEST(DaemonArgs, NewlineAndNulForms) {
    {
        Pair p;
        std::string s = "--server\n--sender\n-logDtpre.iLsfxC\n.\nweb/\n\n";
        ASSERT_EQ(::write(p.b.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
        auto ch = channel(p.a.get());
        auto args = read_args(ch, 29);
        ASSERT_TRUE(args) << args.error().message;
        EXPECT_EQ(args->size(), 5u);
        EXPECT_TRUE(is_pull(*args));
    }
    {
        Pair p;
        std::string s("--server\0-logDtpre.iLsfxC\0.\0web/\0\0", 35);
        ASSERT_EQ(::write(p.b.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
        auto ch = channel(p.a.get());
        auto args = read_args(ch, 30);
        ASSERT_TRUE(args) << args.error().message;
        EXPECT_EQ(args->size(), 4u);
        EXPECT_FALSE(is_pull(*args));
    }
}

// rsync -s at protocol 27, as the 3.5.0 client sends it: the unprotected part, a "(null)"
// line and the rest, then the protected list "rsync\0-lr\0.\0web/with space\0\0".
TEST(DaemonArgs, SecludedArgsAreMerged) {
    Pair p;
    std::string s = "--server\n--sender\n-sv\n(null)\n-lr\n.\nweb/with space\n\n";
    s += std::string("rsync\0-lr\0.\0web/with space\0\0", 28);
    ASSERT_EQ(::write(p.b.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
    auto ch = channel(p.a.get());
    auto first = read_args(ch, 27);
    ASSERT_TRUE(first) << first.error().message;
    auto all = read_protected_args(ch, *first);
    ASSERT_TRUE(all) << all.error().message;
    EXPECT_EQ(*all, (std::vector<std::string>{"--server", "--sender", "-v", "-lr", ".", "web/with space"}));
    EXPECT_TRUE(is_pull(*all));

    std::vector<std::string> plain = {"--server", "-logDtpre.iLsfxC", ".", "web/"};
    EXPECT_EQ(*read_protected_args(ch, plain), plain) << "no -s: nothing more is read; 's' after -e is a flag";
}

TEST(DaemonArgs, BoundsAndGarbage) {
    {
        Pair p;
        std::string s = "--server\n" + std::string(5000, 'x') + "\n";
        ::write(p.b.get(), s.data(), s.size());
        auto ch = channel(p.a.get());
        EXPECT_FALSE(read_args(ch, 27));
    }
    {
        Pair p;
        std::string s = "rm -rf /\n\n";
        ::write(p.b.get(), s.data(), s.size());
        auto ch = channel(p.a.get());
        EXPECT_FALSE(read_args(ch, 27)) << "must start with --server";
    }
    {
        Pair p;
        std::string s = "--server\n";
        for (int i = 0; i < 2000; ++i) s += "-v\n";
        std::thread w([&] { ::write(p.b.get(), s.data(), s.size()); });
        auto ch = channel(p.a.get());
        EXPECT_FALSE(read_args(ch, 27)) << "too many arguments";
        w.join();
    }
    {
        Pair p;  // a client that never finishes: the deadline ends the wait
        ::write(p.b.get(), "--server\n", 9);
        auto ch = LineChannel(p.a.get(), p.a.get(), std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
        auto t0 = std::chrono::steady_clock::now();
        auto r = read_args(ch, 27);
        EXPECT_FALSE(r);
        EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
    }
}

TEST(DaemonArgs, RefuseOptions) {
    std::vector<std::string> args = {"--server", "-vlogDtprze.iLsfxC", "--delete-after", ".", "web/"};
    EXPECT_EQ(refused_option(args, "delete*"), "--delete-after");
    EXPECT_EQ(refused_option(args, "delete"), "--delete-after") << "rsyncd: 'delete' covers --delete-WHEN";
    EXPECT_EQ(refused_option(args, "compress"), "--compress");
    EXPECT_EQ(refused_option(args, "checksum hard-links"), "");
    EXPECT_EQ(refused_option(args, "iLsfxC"), "") << "capability flags after -e are not options";
    EXPECT_EQ(refused_option(args, ""), "");
    // A filter option's rule is text, not options: "- *.o" names no -o, "--sender" no pull.
    std::vector<std::string> f = {"--server", "-r", "--filter", "- *.o", "-f", "- owner", "-f+ x", ".", "web/"};
    EXPECT_EQ(refused_option(f, "owner"), "");
    EXPECT_EQ(refused_option(f, "filter"), "--filter");
    std::vector<std::string> short_f = {"--server", "-rf- *.o", ".", "web/"};
    EXPECT_EQ(refused_option(short_f, "owner"), "");
    EXPECT_EQ(refused_option(short_f, "filter"), "--filter");
    std::vector<std::string> xf = {"--server", "-r", "--exclude-from=rules", ".", "web/"};
    EXPECT_EQ(refused_option(xf, "exclude*"), "--exclude-from");
}

// rsyncd's allow-list form: "*" refuses every option, "!x" accepts x again; the last
// matching word wins, "a" stands for the options -a implies, and "*" never refuses the
// exact-only options (--server, --sender, -e capability flags, -n).
TEST(DaemonArgs, RefuseOptionsAllowList) {
    std::vector<std::string> av = {"--server", "--sender", "-vlogDtpre.iLsfxC", ".", "mod/"};
    EXPECT_EQ(refused_option(av, "* !a !v"), "");
    std::vector<std::string> avz = {"--server", "--sender", "-vlogDtprze.iLsfxC", ".", "mod/"};
    EXPECT_EQ(refused_option(avz, "* !a !v"), "--compress");
    EXPECT_EQ(refused_option(avz, "* !a"), "--verbose");
    EXPECT_EQ(refused_option(avz, "compress !compress"), "");
    EXPECT_EQ(refused_option(avz, "!compress compress"), "--compress");
    std::vector<std::string> dry = {"--server", "-nr", ".", "mod/"};
    EXPECT_EQ(refused_option(dry, "*"), "--recursive");
    std::vector<std::string> n_only = {"--server", "-n", ".", "mod/"};
    EXPECT_EQ(refused_option(n_only, "*"), "") << "dry-run is never refused by a wildcard";
    std::vector<std::string> del = {"--server", "-r", "--delete-during", ".", "mod/"};
    EXPECT_EQ(refused_option(del, "* !a !delete*"), "");
    EXPECT_EQ(refused_option(del, "checksum*"), "");
    std::vector<std::string> del_alias = {"--server", "-r", "--del", ".", "mod/"};
    EXPECT_EQ(refused_option(del_alias, "delete-during"), "--del") << "--del is --delete-during";
    EXPECT_EQ(refused_option(del, "del"), "--delete-during");
}

}  // namespace
}  // namespace sfs::server
