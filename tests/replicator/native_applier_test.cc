// The mirror-side applier (server/native) over a socketpair, driven by raw protocol frames:
// every op, replays, hostile paths, content atomicity, ENOSPC, delta, listing, durability.
#include <librsync.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <cstring>
#include <map>
#include <random>

#include "protocol/native/content_hash.h"
#include "tests/replicator/native_test_util.h"

namespace sfs::testing {
namespace {

pn::Hash128 hash_of(std::string_view data) { return pn::ContentHasher::of(data); }

// Sends a whole-file transfer of `data` in chunks of `chunk` bytes.
void send_whole(Served& s, std::uint64_t seq, const std::string& path, std::string_view data, std::uint32_t mode = 0644,
                std::size_t chunk = 100000, pn::Timestamp mtime = {1600000000, 123456789}) {
    s.send(pn::ContentBegin{seq, path, pn::ContentEncoding::Literal, mode, 0, 0, data.size(), mtime, mtime});
    for (std::size_t off = 0; off < data.size(); off += chunk)
        s.send(pn::ContentChunk{seq, bytes(data.substr(off, chunk))});
    s.send(pn::ContentCommit{seq, hash_of(data)});
}

struct stat lstat_of(const stdfs::path& p) {
    struct stat st{};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st;
}

std::vector<std::string> temp_files_in(const stdfs::path& dir) {
    std::vector<std::string> out;
    for (auto& e : stdfs::recursive_directory_iterator(dir))
        if (e.path().filename().string().find(".sfs.") != std::string::npos) out.push_back(e.path().string());
    return out;
}

TEST(NativeApplier, EveryNamespaceOpApplies) {
    ModuleDirs d;
    Served s(d.module());
    EXPECT_EQ(s.hello().applied_seq, 0u);
    std::uint64_t seq = 0;
    s.send(pn::Mkdir{++seq, "dir", 0750, 1234, 5678});
    s.send(pn::Mkdir{++seq, "dir/sub", 0700, 0, 0});
    s.send(pn::Create{++seq, "dir/file", 0640, 1234, 5678});
    s.send(pn::WriteRange{++seq, "dir/file", 0, bytes("hello world")});
    s.send(pn::WriteRange{++seq, "dir/file", 6, bytes("WORLD")});
    s.send(pn::Setattr{++seq, "dir/file", pn::kAttrMtime | pn::kAttrAtime | pn::kAttrMode, 0604, 0, 0, 0,
                       {1500000000, 5}, {1600000000, 999999999}});
    s.send(pn::Symlink{++seq, "dir/link", "file", 0, 0});
    s.send(pn::Link{++seq, "dir/hard", "dir/file"});
    s.send(pn::Mknod{++seq, "dir/fifo", 010600, 0, 0, 0});
    s.send(pn::Setxattr{++seq, "dir/file", "user.color", "blue"});
    s.send(pn::Setxattr{++seq, "dir/file", "user.gone", "x"});
    s.send(pn::Removexattr{++seq, "dir/file", "user.gone"});
    s.send(pn::Create{++seq, "dir/tmp", 0600, 0, 0});
    s.send(pn::Rename{++seq, "dir/tmp", "dir/renamed", 0});
    s.send(pn::Create{++seq, "dir/victim", 0600, 0, 0});
    s.send(pn::Unlink{++seq, "dir/victim"});
    s.send(pn::Mkdir{++seq, "dir/empty", 0755, 0, 0});
    s.send(pn::Rmdir{++seq, "dir/empty"});
    s.send(pn::Create{++seq, "dir/trunc", 0644, 0, 0});
    s.send(pn::WriteRange{++seq, "dir/trunc", 0, bytes("0123456789")});
    s.send(pn::Setattr{++seq, "dir/trunc", pn::kAttrSize, 0, 0, 0, 4, {}, {}});
    s.send(pn::Setattr{++seq, "", pn::kAttrMode, 0751, 0, 0, 0, {}, {}});
    auto done = s.barrier();
    EXPECT_EQ(done.err, 0);
    EXPECT_EQ(done.applied_seq, seq);
    EXPECT_TRUE(s.errors().empty()) << s.errors().front().message;
    EXPECT_EQ(s.acked(), seq);

    auto r = d.root;
    EXPECT_TRUE(stdfs::is_directory(r / "dir/sub"));
    EXPECT_EQ(lstat_of(r / "dir").st_mode & 07777, 0750u);
    struct stat f = lstat_of(r / "dir/file");  // before reading it: relatime would move atime
    EXPECT_EQ(read_file(r / "dir/file"), "hello WORLD");
    EXPECT_EQ(f.st_mode & 07777, 0604u);
    EXPECT_EQ(f.st_mtim.tv_sec, 1600000000);
    EXPECT_EQ(f.st_mtim.tv_nsec, 999999999);
    EXPECT_EQ(f.st_atim.tv_sec, 1500000000);
    EXPECT_EQ(f.st_nlink, 2u);
    EXPECT_EQ(lstat_of(r / "dir/hard").st_ino, f.st_ino);
    if (::geteuid() == 0) {
        EXPECT_EQ(f.st_uid, 1234u);
        EXPECT_EQ(f.st_gid, 5678u);
    }
    EXPECT_EQ(stdfs::read_symlink(r / "dir/link"), "file");
    EXPECT_TRUE(S_ISFIFO(lstat_of(r / "dir/fifo").st_mode));
    char val[16] = {};
    EXPECT_EQ(::getxattr((r / "dir/file").c_str(), "user.color", val, sizeof val), 4);
    EXPECT_STREQ(val, "blue");
    EXPECT_LT(::getxattr((r / "dir/file").c_str(), "user.gone", val, sizeof val), 0);
    EXPECT_TRUE(stdfs::exists(r / "dir/renamed"));
    EXPECT_FALSE(stdfs::exists(r / "dir/tmp"));
    EXPECT_FALSE(stdfs::exists(r / "dir/victim"));
    EXPECT_FALSE(stdfs::exists(r / "dir/empty"));
    EXPECT_EQ(read_file(r / "dir/trunc"), "0123");
    EXPECT_EQ(lstat_of(r).st_mode & 07777, 0751u);
    EXPECT_TRUE(temp_files_in(r).empty());
    auto stats = s.finish();
    ASSERT_TRUE(stats.has_value()) << stats.error().message;
    EXPECT_EQ(stats->ops_applied, seq);
    EXPECT_GT(stats->bytes_in, 0u);
    EXPECT_GT(stats->bytes_out, 0u);
}

TEST(NativeApplier, DeviceNodeAndRenameFlags) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for mknod of a device";
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    s.send(pn::Mknod{1, "null", 020666, makedev(1, 3), 0, 0});
    s.send(pn::Create{2, "a", 0644, 0, 0});
    s.send(pn::Create{3, "b", 0644, 0, 0});
    s.send(pn::WriteRange{4, "a", 0, bytes("A")});
    s.send(pn::Rename{5, "a", "b", pn::kRenameNoReplace});  // fails: b exists
    s.send(pn::Rename{6, "a", "b", pn::kRenameExchange});
    s.barrier();
    ASSERT_EQ(s.errors().size(), 1u);
    EXPECT_EQ(s.errors()[0].seq, 5u);
    EXPECT_EQ(s.errors()[0].err, EEXIST);
    EXPECT_NE(s.errors()[0].message.find("\"a\""), std::string::npos) << s.errors()[0].message;
    struct stat st = lstat_of(d.root / "null");
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(1, 3));
    EXPECT_EQ(read_file(d.root / "b"), "A");
    EXPECT_EQ(read_file(d.root / "a"), "");
}

// The same op list applied twice (state file lost in between): the second pass must succeed
// without errors and leave the same tree; with the state file, the replay is skipped.
std::vector<pn::Message> replay_ops() {
    return {
        pn::Mkdir{1, "d", 0755, 0, 0},
        pn::Create{2, "d/f", 0644, 0, 0},
        pn::WriteRange{3, "d/f", 0, bytes("content")},
        pn::Link{4, "d/g", "d/f"},
        pn::Rename{5, "d/f", "d/h", 0},
        pn::Symlink{6, "d/s", "h", 0, 0},
        pn::Mkdir{7, "gone", 0755, 0, 0},
        pn::Rmdir{8, "gone"},
        pn::Create{9, "x", 0600, 0, 0},
        pn::Unlink{10, "x"},
        pn::Link{11, "d/k", "d/g"},
        pn::Unlink{12, "d/g"},
        pn::Setxattr{13, "d/h", "user.a", "1"},
        pn::Removexattr{14, "d/h", "user.a"},
        pn::Setattr{15, "d/h", pn::kAttrMtime, 0, 0, 0, 0, {}, {1234, 0}},
    };
}

TEST(NativeApplier, ReplayWithoutStateIsHarmless) {
    ModuleDirs d;
    for (int pass = 0; pass < 2; ++pass) {
        Served s(d.module());
        EXPECT_EQ(s.hello().applied_seq, 0u);
        for (auto& m : replay_ops()) s.send(m);
        s.barrier();
        for (auto& e : s.errors()) ADD_FAILURE() << "pass " << pass << " seq " << e.seq << ": " << e.message;
        ASSERT_TRUE(s.finish().has_value());
        stdfs::remove_all(d.state / "streams");  // forget: the next pass replays everything
    }
    EXPECT_EQ(read_file(d.root / "d/h"), "content");
    EXPECT_EQ(lstat_of(d.root / "d/k").st_ino, lstat_of(d.root / "d/h").st_ino);
    EXPECT_FALSE(stdfs::exists(d.root / "d/g"));
    EXPECT_FALSE(stdfs::exists(d.root / "d/f"));
    EXPECT_FALSE(stdfs::exists(d.root / "x"));
    EXPECT_FALSE(stdfs::exists(d.root / "gone"));
    EXPECT_EQ(stdfs::read_symlink(d.root / "d/s"), "h");
    EXPECT_EQ(lstat_of(d.root / "d/h").st_mtim.tv_sec, 1234);
}

TEST(NativeApplier, ReconnectSkipsAppliedSeqs) {
    ModuleDirs d;
    {
        Served s(d.module());
        s.hello("stream-A");
        for (auto& m : replay_ops()) s.send(m);
        s.barrier();
        ASSERT_TRUE(s.finish().has_value());
    }
    // Change the mirror behind the stream's back: a skipped replay must not touch it.
    write_file(d.root / "d/h", "changed");
    Served s(d.module());
    EXPECT_EQ(s.hello("stream-A").applied_seq, 15u);
    s.send(pn::Create{2, "d/h", 0644, 0, 0});               // old seq: skipped
    s.send(pn::WriteRange{3, "d/h", 0, bytes("XXXXXXX")});  // old seq: skipped
    s.send(pn::Create{16, "new", 0644, 0, 0});              // new: applied
    auto done = s.barrier();
    EXPECT_EQ(done.applied_seq, 16u);
    EXPECT_TRUE(s.errors().empty());
    EXPECT_EQ(read_file(d.root / "d/h"), "changed");
    EXPECT_TRUE(stdfs::exists(d.root / "new"));
    auto stats = s.finish();
    ASSERT_TRUE(stats.has_value());
    EXPECT_EQ(stats->ops_skipped, 2u);
    EXPECT_EQ(stats->ops_applied, 1u);
    // Another stream has its own position.
    Served other(d.module());
    EXPECT_EQ(other.hello("stream-B").applied_seq, 0u);
}

TEST(NativeApplier, ReplayOfCreateWithExistingTypesAndRenameTargets) {
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    ::symlink("/etc/passwd", (d.root / "was-link").c_str());
    ::mkfifo((d.root / "was-fifo").c_str(), 0600);
    stdfs::create_directory(d.root / "is-dir");
    write_file(d.root / "target", "moved already");
    s.send(pn::Create{1, "was-link", 0644, 0, 0});  // replaces the symlink, never follows it
    s.send(pn::Create{2, "was-fifo", 0644, 0, 0});
    s.send(pn::Mkdir{3, "is-dir", 0700, 0, 0});     // exists as dir: fine
    s.send(pn::Rename{4, "source-gone", "target", 0});  // replay of a done rename
    s.send(pn::Unlink{5, "never/was/there"});
    s.send(pn::Rmdir{6, "nope"});
    s.send(pn::Create{7, "is-dir", 0644, 0, 0});    // a dir is never replaced by a file
    s.send(pn::Mkdir{8, "target", 0755, 0, 0});     // nor a file by a dir
    s.barrier();
    ASSERT_EQ(s.errors().size(), 2u);
    EXPECT_EQ(s.errors()[0].seq, 7u);
    EXPECT_EQ(s.errors()[1].seq, 8u);
    EXPECT_EQ(s.errors()[1].err, EEXIST);
    EXPECT_TRUE(S_ISREG(lstat_of(d.root / "was-link").st_mode));
    EXPECT_TRUE(S_ISREG(lstat_of(d.root / "was-fifo").st_mode));
    EXPECT_EQ(read_file(d.root / "target"), "moved already");
    EXPECT_GT(stdfs::file_size("/etc/passwd"), 0u);
}

TEST(NativeApplier, HostilePathsNeverEscape) {
    ModuleDirs d;
    stdfs::path outside = d.tmp.path() / "outside";
    stdfs::create_directory(outside);
    write_file(outside / "secret", "secret");
    ::chmod((outside / "secret").c_str(), 0600);
    // Planted links inside the module: absolute, and relative climbing out.
    ::symlink(outside.c_str(), (d.root / "abs").c_str());
    ::symlink("../outside", (d.root / "rel").c_str());
    ::symlink((outside / "secret").c_str(), (d.root / "filelink").c_str());
    Served s(d.module());
    s.hello();
    s.send(pn::Mkdir{1, "abs/x", 0755, 0, 0});
    s.send(pn::Create{2, "rel/y", 0644, 0, 0});
    s.send(pn::WriteRange{3, "abs/secret", 0, bytes("pwned")});
    s.send(pn::WriteRange{4, "filelink", 0, bytes("pwned")});  // final symlink: not followed
    s.send(pn::Setattr{5, "filelink", pn::kAttrMode, 0777, 0, 0, 0, {}, {}});  // mode of a symlink: ignored
    s.send(pn::Unlink{6, "rel/secret"});
    s.send(pn::Rename{7, "rel/secret", "stolen", 0});
    s.send(pn::Link{8, "stolen2", "abs/secret"});
    send_whole(s, 9, "abs/secret", "pwned");
    s.send(pn::Setxattr{10, "rel/secret", "user.x", "1"});
    std::uint64_t sig = s.next_id();
    s.send(pn::SignatureRequest{sig, "abs/secret", 0, 0});
    auto sig_done = s.wait_done(sig);
    EXPECT_EQ(sig_done.err, EXDEV);
    std::uint64_t list = s.next_id();
    s.send(pn::ListRequest{list, "abs", pn::kListRecursive, });
    auto list_done = s.wait_done(list);
    EXPECT_EQ(list_done.err, 0);  // lists the symlink itself, not what it points to
    s.barrier();
    std::map<std::uint64_t, int> errs;
    for (auto& e : s.errors()) errs[e.seq] = e.err;
    EXPECT_EQ(errs[1], EXDEV);
    EXPECT_EQ(errs[2], EXDEV);
    EXPECT_EQ(errs[3], EXDEV);
    EXPECT_EQ(errs[4], ELOOP);
    EXPECT_EQ(errs.count(5), 0u);
    EXPECT_EQ(errs[6], EXDEV);
    EXPECT_EQ(errs[7], EXDEV);
    EXPECT_EQ(errs[8], EXDEV);
    EXPECT_EQ(errs[9], EXDEV);
    EXPECT_EQ(errs[10], EXDEV);
    EXPECT_EQ(read_file(outside / "secret"), "secret");
    EXPECT_EQ(lstat_of(outside / "secret").st_mode & 07777, 0600u);
    EXPECT_FALSE(stdfs::exists(outside / "x"));
    EXPECT_FALSE(stdfs::exists(outside / "y"));
    EXPECT_FALSE(stdfs::exists(d.root / "stolen"));
    for (auto& m : s.other()) {
        if (auto* c = std::get_if<pn::ListChunk>(&m)) {
            ASSERT_EQ(c->entries.size(), 1u);
            EXPECT_EQ(c->entries[0].type, pn::NodeType::Symlink);
        }
    }
    ASSERT_TRUE(s.finish().has_value());
}

TEST(NativeApplier, HostileFrameEndsSessionWithFatal) {
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    // Mkdir{seq 1, "../evil"} built by hand: the encoder would refuse it.
    std::vector<std::uint8_t> payload = {1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, '.', '.', '/', 'e', 'v', 'i', 'l',
                                         0xed, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    std::vector<std::uint8_t> frame = {static_cast<std::uint8_t>(payload.size()), 0, 0, 0,
                                       static_cast<std::uint8_t>(pn::MsgType::Mkdir)};
    frame.insert(frame.end(), payload.begin(), payload.end());
    s.send_raw(frame);
    auto m = s.receive();
    ASSERT_TRUE(m.has_value());
    auto* f = std::get_if<pn::Fatal>(&*m);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->err, EPROTO);
    EXPECT_NE(f->message.find("'..'"), std::string::npos) << f->message;
    auto r = s.finish();
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("socketpair"), std::string::npos) << r.error().message;
    EXPECT_FALSE(stdfs::exists(d.tmp.path() / "evil"));
}

TEST(NativeApplier, HugeFrameLengthIsRefused) {
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    s.send_raw({0xff, 0xff, 0xff, 0xff, 0x10});
    auto m = s.receive();
    ASSERT_TRUE(m.has_value());
    ASSERT_NE(std::get_if<pn::Fatal>(&*m), nullptr);
    EXPECT_FALSE(s.finish().has_value());
}

TEST(NativeApplier, FirstFrameMustBeHello) {
    ModuleDirs d;
    Served s(d.module());
    s.send(pn::Mkdir{1, "a", 0755, 0, 0});
    auto m = s.receive();
    ASSERT_TRUE(m.has_value());
    ASSERT_NE(std::get_if<pn::Fatal>(&*m), nullptr);
    EXPECT_FALSE(s.finish().has_value());
    EXPECT_FALSE(stdfs::exists(d.root / "a"));
}

TEST(NativeApplier, WholeFileIsAtomicAndVerified) {
    ModuleDirs d;
    write_file(d.root / "f", "old content");
    Served s(d.module());
    s.hello();
    std::string big(3 * 1000 * 1000 + 17, '\0');
    std::mt19937 rng(7);
    for (auto& c : big) c = static_cast<char>(rng());
    // 1: a good transfer in many chunks.
    send_whole(s, 1, "g", big, 0640, 300000);
    // 2: a transfer whose hash does not match: the old file stays.
    s.send(pn::ContentBegin{2, "f", pn::ContentEncoding::Literal, 0644, 0, 0, 3, {}, {}});
    s.send(pn::ContentChunk{2, bytes("new")});
    s.send(pn::ContentCommit{2, hash_of("xyz")});
    // 3: the client aborts.
    s.send(pn::ContentBegin{3, "f", pn::ContentEncoding::Literal, 0644, 0, 0, 3, {}, {}});
    s.send(pn::ContentChunk{3, bytes("new")});
    s.send(pn::ContentAbort{3});
    // 4: more bytes than announced.
    s.send(pn::ContentBegin{4, "f", pn::ContentEncoding::Literal, 0644, 0, 0, 2, {}, {}});
    s.send(pn::ContentChunk{4, bytes("new")});
    s.send(pn::ContentCommit{4, hash_of("new")});
    // 5: replacing an existing file with a good one keeps nothing of the old.
    send_whole(s, 5, "f2", "second");
    s.barrier();
    std::map<std::uint64_t, int> errs;
    for (auto& e : s.errors()) errs[e.seq] = e.err;
    EXPECT_EQ(errs.size(), 2u);
    EXPECT_EQ(errs[2], EIO);
    EXPECT_EQ(errs[4], EFBIG);
    EXPECT_EQ(read_file(d.root / "g"), big);
    struct stat st = lstat_of(d.root / "g");
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
    EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
    EXPECT_EQ(read_file(d.root / "f"), "old content");
    EXPECT_EQ(read_file(d.root / "f2"), "second");
    EXPECT_TRUE(temp_files_in(d.root).empty());

    // A connection lost in the middle of a transfer leaves the old file and no temp file.
    s.send(pn::ContentBegin{6, "f", pn::ContentEncoding::Literal, 0644, 0, 0, 6, {}, {}});
    s.send(pn::ContentChunk{6, bytes("new")});
    s.send(pn::Barrier{99, false});  // a Barrier inside a transfer is a protocol error
    std::optional<pn::Message> m;
    while ((m = s.receive()) && !std::holds_alternative<pn::Fatal>(*m)) {}
    ASSERT_TRUE(m.has_value());
    EXPECT_NE(std::get<pn::Fatal>(*m).message.find("inside the content transfer"), std::string::npos);
    EXPECT_FALSE(s.finish().has_value());
    EXPECT_EQ(read_file(d.root / "f"), "old content");
    EXPECT_TRUE(temp_files_in(d.root).empty());
}

TEST(NativeApplier, ConnectionLostMidTransferRemovesTemp) {
    ModuleDirs d;
    write_file(d.root / "f", "old");
    {
        Served s(d.module());
        s.hello();
        s.send(pn::ContentBegin{1, "f", pn::ContentEncoding::Literal, 0644, 0, 0, 100, {}, {}});
        s.send(pn::ContentChunk{1, bytes("partial")});
        EXPECT_TRUE(s.finish().has_value());  // a clean close, just an unfinished op
    }
    EXPECT_EQ(read_file(d.root / "f"), "old");
    EXPECT_TRUE(temp_files_in(d.root).empty());
}

// librsync delta of `newer` against a signature, computed in memory like the replicator does.
std::string make_delta(const std::string& signature, const std::string& newer) {
    auto run = [](rs_job_t* job, const std::string& in) {
        std::string out;
        std::vector<char> buf(65536);
        std::string input = in;
        rs_buffers_t b{};
        b.next_in = input.data();
        b.avail_in = input.size();
        b.eof_in = 1;
        for (;;) {
            b.next_out = buf.data();
            b.avail_out = buf.size();
            rs_result r = rs_job_iter(job, &b);
            out.append(buf.data(), buf.size() - b.avail_out);
            if (r == RS_DONE) break;
            EXPECT_EQ(r, RS_BLOCKED) << rs_strerror(r);
            if (r != RS_BLOCKED) break;
        }
        rs_job_free(job);
        return out;
    };
    rs_signature_t* sig = nullptr;
    run(rs_loadsig_begin(&sig), signature);
    EXPECT_EQ(rs_build_hash_table(sig), RS_DONE);
    std::string delta = run(rs_delta_begin(sig), newer);
    rs_free_sumset(sig);
    return delta;
}

TEST(NativeApplier, SignatureAndDeltaUpdateAFile) {
    ModuleDirs d;
    std::string old(2 * 1024 * 1024, '\0');
    std::mt19937 rng(11);
    for (auto& c : old) c = static_cast<char>(rng());
    write_file(d.root / "big", old);
    Served s(d.module());
    s.hello();
    std::uint64_t id = s.next_id();
    s.send(pn::SignatureRequest{id, "big", 0, 0});
    auto done = s.wait_done(id);
    ASSERT_EQ(done.err, 0) << done.message;
    EXPECT_EQ(done.size, old.size());
    std::string signature;
    for (auto& m : s.other())
        if (auto* c = std::get_if<pn::SignatureChunk>(&m); c && c->id == id) signature.append(c->data.begin(), c->data.end());
    s.other().clear();
    ASSERT_FALSE(signature.empty());
    std::string newer = old;
    std::memcpy(newer.data() + 1000000, "a 4 KiB change would go here", 28);
    newer += "appended tail";
    std::string delta = make_delta(signature, newer);
    EXPECT_LT(delta.size(), 64u * 1024);
    s.send(pn::ContentBegin{1, "big", pn::ContentEncoding::Delta, 0600, 0, 0, newer.size(), {5, 0}, {6, 0}});
    for (std::size_t off = 0; off < delta.size(); off += 1000)  // small chunks split librsync commands
        s.send(pn::ContentChunk{1, bytes(std::string_view(delta).substr(off, 1000))});
    s.send(pn::ContentCommit{1, hash_of(newer)});
    // A corrupt delta is refused and leaves the file alone.
    s.send(pn::ContentBegin{2, "big", pn::ContentEncoding::Delta, 0600, 0, 0, 10, {}, {}});
    s.send(pn::ContentChunk{2, bytes("this is not a librsync delta")});
    s.send(pn::ContentCommit{2, hash_of("0123456789")});
    s.barrier();
    ASSERT_EQ(s.errors().size(), 1u);
    EXPECT_EQ(s.errors()[0].seq, 2u);
    EXPECT_NE(s.errors()[0].message.find("\"big\""), std::string::npos);
    EXPECT_EQ(read_file(d.root / "big"), newer);
    EXPECT_EQ(lstat_of(d.root / "big").st_mtim.tv_sec, 6);
    EXPECT_TRUE(temp_files_in(d.root).empty());
}

TEST(NativeApplier, ListingWithChecksums) {
    ModuleDirs d;
    stdfs::create_directories(d.root / "a/b");
    write_file(d.root / "a/b/f", "data");
    write_file(d.root / "z", "");
    ::symlink("b/f", (d.root / "a/l").c_str());
    ::link((d.root / "a/b/f").c_str(), (d.root / "a/h").c_str());
    Served s(d.module());
    s.hello();
    std::uint64_t id = s.next_id();
    s.send(pn::ListRequest{id, "", pn::kListRecursive | pn::kListChecksums});
    auto done = s.wait_done(id);
    ASSERT_EQ(done.err, 0) << done.message;
    std::vector<pn::ListEntry> all;
    for (auto& m : s.other())
        if (auto* c = std::get_if<pn::ListChunk>(&m)) all.insert(all.end(), c->entries.begin(), c->entries.end());
    std::vector<std::string> paths;
    for (auto& e : all) paths.push_back(e.path);
    EXPECT_EQ(paths, (std::vector<std::string>{"", "a", "a/b", "a/b/f", "a/h", "a/l", "z"}));
    ASSERT_EQ(all.size(), 7u);
    EXPECT_EQ(all[3].type, pn::NodeType::Regular);
    EXPECT_EQ(all[3].size, 4u);
    ASSERT_TRUE(all[3].hash.has_value());
    EXPECT_EQ(*all[3].hash, hash_of("data"));
    EXPECT_EQ(all[3].ino, all[4].ino);
    EXPECT_EQ(all[3].nlink, 2u);
    EXPECT_EQ(all[5].type, pn::NodeType::Symlink);
    EXPECT_EQ(all[5].target, "b/f");
    EXPECT_FALSE(all[5].hash.has_value());
    EXPECT_EQ(*all[6].hash, hash_of(""));
    // A missing subtree is an error in Done, not a broken session.
    std::uint64_t id2 = s.next_id();
    s.send(pn::ListRequest{id2, "missing", pn::kListRecursive});
    EXPECT_EQ(s.wait_done(id2).err, ENOENT);
    ASSERT_TRUE(s.finish().has_value());
}

TEST(NativeApplier, StateDirInsideModuleIsNotListed) {
    ModuleDirs d;
    auto m = d.module();
    m.state_dir = (d.root / ".syncfs-state").string();
    write_file(d.root / "f", "x");
    Served s(m);
    s.hello();
    std::uint64_t id = s.next_id();
    s.send(pn::ListRequest{id, "", pn::kListRecursive});
    ASSERT_EQ(s.wait_done(id).err, 0);
    for (auto& msg : s.other()) {
        if (auto* c = std::get_if<pn::ListChunk>(&msg)) {
            for (auto& e : c->entries) EXPECT_EQ(e.path.find(".syncfs-state"), std::string::npos);
        }
    }
}

TEST(NativeApplier, ReadOnlyModuleRefusesMutationsButAnswersQueries) {
    ModuleDirs d;
    write_file(d.root / "f", "x");
    Served s(d.module(/*read_only=*/true));
    auto hello = s.hello();
    EXPECT_TRUE(hello.caps & pn::kCapReadOnly);
    s.send(pn::Mkdir{1, "a", 0755, 0, 0});
    s.send(pn::Unlink{2, "f"});
    send_whole(s, 3, "g", "data");
    std::uint64_t id = s.next_id();
    s.send(pn::ListRequest{id, "", 0});
    EXPECT_EQ(s.wait_done(id).err, 0);
    s.barrier();
    ASSERT_EQ(s.errors().size(), 3u);
    for (auto& e : s.errors()) {
        EXPECT_EQ(e.err, EROFS);
        EXPECT_NE(e.message.find("read only"), std::string::npos);
    }
    EXPECT_TRUE(stdfs::exists(d.root / "f"));
    EXPECT_FALSE(stdfs::exists(d.root / "a"));
    EXPECT_FALSE(stdfs::exists(d.root / "g"));
}

TEST(NativeApplier, PipelinedOpsAreAckedCoalesced) {
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    std::vector<std::uint8_t> burst;
    for (std::uint64_t i = 1; i <= 2000; ++i)
        ASSERT_TRUE(pn::encode(pn::Mkdir{i, "d" + std::to_string(i), 0755, 0, 0}, burst).has_value());
    s.send_raw(burst);
    auto done = s.barrier();
    EXPECT_EQ(done.applied_seq, 2000u);
    EXPECT_EQ(s.acked(), 2000u);
    EXPECT_LT(s.cumulative_acks(), 200u);  // coalesced, not one per op
    EXPECT_TRUE(stdfs::is_directory(d.root / "d2000"));
    // Past DurableSet::kMaxTracked paths a durable barrier falls back to syncfs(2).
    auto durable = s.barrier(/*durable=*/true);
    EXPECT_EQ(durable.err, 0) << durable.message;
    EXPECT_TRUE(durable.flags & pn::kDoneDurable);
}

TEST(NativeApplier, DurableBarrierAndFsync) {
    ModuleDirs d;
    Served s(d.module());
    s.hello();
    s.send(pn::Mkdir{1, "a", 0755, 0, 0});
    send_whole(s, 2, "a/f", "durable data");
    s.send(pn::Rename{3, "a", "b", 0});  // tracked paths follow the rename
    auto done = s.barrier(true);
    EXPECT_EQ(done.err, 0) << done.message;
    EXPECT_TRUE(done.flags & pn::kDoneDurable);
    std::uint64_t id = s.next_id();
    s.send(pn::Fsync{id, "b/f"});
    auto f = s.wait_done(id);
    EXPECT_EQ(f.err, 0) << f.message;
    EXPECT_TRUE(f.flags & pn::kDoneDurable);
    EXPECT_EQ(f.applied_seq, 3u);
}

TEST(NativeApplier, SecondSessionOfAStreamWaitsForTheFirst) {
    ModuleDirs d;
    auto m = d.module();
    m.lock_timeout_ms = 300;
    Served first(m);
    first.hello("same");
    Served second(m);
    second.send(pn::Hello{pn::kHelloMagic, pn::kProtocolVersion, 0, "same"});
    auto reply = second.receive();
    ASSERT_TRUE(reply.has_value());
    auto* f = std::get_if<pn::Fatal>(&*reply);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->err, EBUSY);
}

TEST(NativeApplier, MungedSymlinksAreStoredMungedAndListedPlain) {
    ModuleDirs d;
    auto m = d.module();
    m.munge_symlinks = true;
    Served s(m);
    EXPECT_TRUE(s.hello().caps & pn::kCapMungeSymlinks);
    s.send(pn::Symlink{1, "l", "/etc/passwd", 0, 0});
    s.barrier();
    EXPECT_EQ(stdfs::read_symlink(d.root / "l"), "/rsyncd-munged//etc/passwd");
    std::uint64_t id = s.next_id();
    s.send(pn::ListRequest{id, "l", 0});
    ASSERT_EQ(s.wait_done(id).err, 0);
    ASSERT_EQ(s.other().size(), 1u);
    auto& c = std::get<pn::ListChunk>(s.other()[0]);
    ASSERT_EQ(c.entries.size(), 1u);
    EXPECT_EQ(c.entries[0].target, "/etc/passwd");
}

TEST(NativeApplier, EmptyFilesSignatureDeltaAndContent) {
    ModuleDirs d;
    write_file(d.root / "empty", "");
    Served s(d.module());
    s.hello();
    std::uint64_t id = s.next_id();
    s.send(pn::SignatureRequest{id, "empty", 0, 0});
    auto done = s.wait_done(id);
    ASSERT_EQ(done.err, 0) << done.message;
    EXPECT_EQ(done.size, 0u);
    std::string signature;
    for (auto& m : s.other())
        if (auto* c = std::get_if<pn::SignatureChunk>(&m)) signature.append(c->data.begin(), c->data.end());
    s.other().clear();
    ASSERT_FALSE(signature.empty());  // the header at least
    std::string delta = make_delta(signature, "now with content");
    s.send(pn::ContentBegin{1, "empty", pn::ContentEncoding::Delta, 0644, 0, 0, 16, {}, {}});
    s.send(pn::ContentChunk{1, bytes(delta)});
    s.send(pn::ContentCommit{1, hash_of("now with content")});
    send_whole(s, 2, "zero", "");  // a whole-file transfer of an empty file: no chunks
    s.barrier();
    EXPECT_TRUE(s.errors().empty()) << s.errors().front().message;
    EXPECT_EQ(read_file(d.root / "empty"), "now with content");
    EXPECT_TRUE(stdfs::exists(d.root / "zero"));
    EXPECT_EQ(stdfs::file_size(d.root / "zero"), 0u);
}

TEST(NativeApplier, IdleSessionEndsCleanly) {
    ModuleDirs d;
    auto m = d.module();
    m.idle_timeout_s = 1;
    Served s(m);
    s.hello();
    auto start = std::chrono::steady_clock::now();
    EXPECT_FALSE(s.receive(5000).has_value());  // the server closes after 1 s of silence
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(4));
    auto r = s.finish();
    EXPECT_TRUE(r.has_value()) << r.error().message;
}

// A small tmpfs as the module: a transfer that does not fit is refused with ENOSPC, the
// previous file stays intact, no temp file remains and the session goes on.
TEST(NativeApplier, FullFilesystemGivesEnospcAndNoTornFile) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
    ModuleDirs d;
    ASSERT_EQ(::mount("tmpfs", d.root.c_str(), "tmpfs", 0, "size=1m"), 0) << std::strerror(errno);
    struct Unmount {
        stdfs::path p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{d.root};
    std::string good(300 * 1024, 'g');
    write_file(d.root / "good", good);
    std::string huge(900 * 1024, 'h');
    {
        Served s(d.module());
        s.hello();
        send_whole(s, 1, "good", huge, 0644, 64 * 1024);        // old + new do not fit
        s.send(pn::Create{2, "after", 0644, 0, 0});            // session continues
        s.send(pn::WriteRange{3, "after", 0, bytes("ok")});
        s.send(pn::WriteRange{4, "after", 4096, std::vector<std::uint8_t>(1000 * 1024, 'x')});  // in place: ENOSPC
        s.barrier();
        std::map<std::uint64_t, pn::Ack> errs;
        for (auto& e : s.errors()) errs[e.seq] = e;
        ASSERT_EQ(errs.count(1), 1u);
        EXPECT_EQ(errs[1].err, ENOSPC);
        EXPECT_NE(errs[1].message.find("\"good\""), std::string::npos) << errs[1].message;
        EXPECT_EQ(errs.count(2), 0u);
        EXPECT_EQ(errs.count(3), 0u);
        ASSERT_EQ(errs.count(4), 1u);
        EXPECT_EQ(errs[4].err, ENOSPC);
        ASSERT_TRUE(s.finish().has_value());
    }
    EXPECT_EQ(read_file(d.root / "good"), good);
    EXPECT_EQ(read_file(d.root / "after").substr(0, 2), "ok");
    EXPECT_TRUE(temp_files_in(d.root).empty());
}

}  // namespace
}  // namespace sfs::testing
