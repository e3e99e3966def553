// Encoding and strict decoding of native protocol frames (docs/protocol.md §2-3).
//
// Each message type has three small functions: put() writes its fields, get() reads them
// (bounds-checked by Reader), check() validates the values (caps, enum ranges, paths). encode
// runs check() before writing so we never emit what the peer would reject; decode runs get(),
// requires the payload to be consumed exactly, then check().
#include <cstring>
#include <type_traits>
#include <utility>

#include "protocol/native/messages.h"
#include "protocol/native/wire.h"

namespace sfs::protocol::native {
namespace {

using Problem = std::string;  // empty = fine

void put_ts(Writer& w, const Timestamp& t) {
    w.i64(t.sec);
    w.u32(t.nsec);
}
Timestamp get_ts(Reader& r) {
    Timestamp t;
    t.sec = r.i64();
    t.nsec = r.u32();
    return t;
}
Problem check_ts(const Timestamp& t, const char* field) {
    if (t.nsec >= 1'000'000'000u) return std::string(field) + ": nsec out of range";
    return {};
}
Problem check_path(std::string_view p, bool allow_root, const char* field) {
    auto r = validate_path(p, allow_root);
    if (!r) return std::string(field) + ": " + r.error().message;
    return {};
}
Problem check_len(std::size_t n, std::size_t cap, const char* field) {
    if (n > cap) return std::string(field) + " too long (" + std::to_string(n) + " > " + std::to_string(cap) + ")";
    return {};
}
Problem check_no_nul(std::string_view s, const char* field) {
    if (s.find('\0') != std::string_view::npos) return std::string(field) + " contains NUL";
    return {};
}
// First non-empty problem.
template <class... P>
Problem first(P&&... problems) {
    Problem out;
    ((out.empty() && !problems.empty() ? (out = std::move(problems), 0) : 0), ...);
    return out;
}

// ---- Hello ----
void put(Writer& w, const Hello& m) { w.u32(m.magic); w.u16(m.version); w.u32(m.flags); w.str(m.stream_id); }
void get(Reader& r, Hello& m) { m.magic = r.u32(); m.version = r.u16(); m.flags = r.u32(); m.stream_id = r.str(kMaxStreamId, "stream_id"); }
Problem check(const Hello& m) {
    if (m.magic != kHelloMagic) return "bad hello magic";
    if (m.stream_id.empty()) return "empty stream_id";
    if (m.stream_id.size() > kMaxStreamId) return "stream_id too long";
    for (char c : m.stream_id)
        if (c < 0x21 || c > 0x7e) return "stream_id must be printable ASCII without spaces";
    return {};
}

void put(Writer& w, const HelloReply& m) { w.u16(m.version); w.u32(m.caps); w.u32(m.max_frame); w.u64(m.applied_seq); }
void get(Reader& r, HelloReply& m) { m.version = r.u16(); m.caps = r.u32(); m.max_frame = r.u32(); m.applied_seq = r.u64(); }
Problem check(const HelloReply& m) {
    if (m.max_frame < kMaxChunk + 8192 || m.max_frame > kMaxFramePayload) return "bad max_frame";
    return {};
}

void put(Writer& w, const Fatal& m) { w.i32(m.err); w.str(m.message); }
void get(Reader& r, Fatal& m) { m.err = r.i32(); m.message = r.str(kMaxMessage, "message"); }
Problem check(const Fatal& m) { return check_len(m.message.size(), kMaxMessage, "message"); }

// ---- mutations ----
void put(Writer& w, const Mkdir& m) { w.u64(m.seq); w.str(m.path); w.u32(m.mode); w.u32(m.uid); w.u32(m.gid); }
void get(Reader& r, Mkdir& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.mode = r.u32(); m.uid = r.u32(); m.gid = r.u32(); }
Problem check(const Mkdir& m) {
    return first(check_path(m.path, false, "path"), m.mode & ~07777u ? Problem("mkdir mode has type bits") : Problem());
}

void put(Writer& w, const Create& m) { w.u64(m.seq); w.str(m.path); w.u32(m.mode); w.u32(m.uid); w.u32(m.gid); }
void get(Reader& r, Create& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.mode = r.u32(); m.uid = r.u32(); m.gid = r.u32(); }
Problem check(const Create& m) {
    return first(check_path(m.path, false, "path"), m.mode & ~07777u ? Problem("create mode has type bits") : Problem());
}

void put(Writer& w, const Mknod& m) { w.u64(m.seq); w.str(m.path); w.u32(m.mode); w.u64(m.rdev); w.u32(m.uid); w.u32(m.gid); }
void get(Reader& r, Mknod& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.mode = r.u32(); m.rdev = r.u64(); m.uid = r.u32(); m.gid = r.u32(); }
Problem check(const Mknod& m) {
    std::uint32_t t = m.mode & 0170000u;
    bool ok_type = t == 0010000u || t == 0140000u || t == 0020000u || t == 0060000u || t == 0100000u;
    return first(check_path(m.path, false, "path"),
                 ok_type && (m.mode & ~0177777u) == 0 ? Problem() : Problem("mknod mode has a bad file type"));
}

void put(Writer& w, const Symlink& m) { w.u64(m.seq); w.str(m.path); w.str(m.target); w.u32(m.uid); w.u32(m.gid); }
void get(Reader& r, Symlink& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.target = r.str(kMaxSymlinkTarget, "target"); m.uid = r.u32(); m.gid = r.u32(); }
Problem check(const Symlink& m) {
    return first(check_path(m.path, false, "path"), check_len(m.target.size(), kMaxSymlinkTarget, "target"),
                 m.target.empty() ? Problem("empty symlink target") : Problem(), check_no_nul(m.target, "target"));
}

void put(Writer& w, const Link& m) { w.u64(m.seq); w.str(m.path); w.str(m.existing); }
void get(Reader& r, Link& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.existing = r.str(kMaxPath, "existing"); }
Problem check(const Link& m) { return first(check_path(m.path, false, "path"), check_path(m.existing, false, "existing")); }

void put(Writer& w, const Rename& m) { w.u64(m.seq); w.str(m.from); w.str(m.to); w.u32(m.flags); }
void get(Reader& r, Rename& m) { m.seq = r.u64(); m.from = r.str(kMaxPath, "from"); m.to = r.str(kMaxPath, "to"); m.flags = r.u32(); }
Problem check(const Rename& m) {
    return first(check_path(m.from, false, "from"), check_path(m.to, false, "to"),
                 (m.flags & ~kRenameAll) || m.flags == kRenameAll ? Problem("bad rename flags") : Problem());
}

void put(Writer& w, const Unlink& m) { w.u64(m.seq); w.str(m.path); }
void get(Reader& r, Unlink& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); }
Problem check(const Unlink& m) { return check_path(m.path, false, "path"); }

void put(Writer& w, const Rmdir& m) { w.u64(m.seq); w.str(m.path); }
void get(Reader& r, Rmdir& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); }
Problem check(const Rmdir& m) { return check_path(m.path, false, "path"); }

void put(Writer& w, const Setattr& m) {
    w.u64(m.seq); w.str(m.path); w.u32(m.mask); w.u32(m.mode); w.u32(m.uid); w.u32(m.gid); w.u64(m.size);
    put_ts(w, m.atime); put_ts(w, m.mtime);
}
void get(Reader& r, Setattr& m) {
    m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.mask = r.u32(); m.mode = r.u32(); m.uid = r.u32(); m.gid = r.u32();
    m.size = r.u64(); m.atime = get_ts(r); m.mtime = get_ts(r);
}
Problem check(const Setattr& m) {
    return first(check_path(m.path, true, "path"), (m.mask & ~kAttrAll) ? Problem("bad setattr mask") : Problem(),
                 (m.mode & ~07777u) ? Problem("setattr mode has type bits") : Problem(),
                 m.size > (std::uint64_t{1} << 62) ? Problem("setattr size out of range") : Problem(),
                 check_ts(m.atime, "atime"), check_ts(m.mtime, "mtime"));
}

void put(Writer& w, const Setxattr& m) { w.u64(m.seq); w.str(m.path); w.str(m.name); w.str(m.value); }
void get(Reader& r, Setxattr& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.name = r.str(kMaxXattrName, "xattr name"); m.value = r.str(kMaxXattrValue, "xattr value"); }
Problem check_xattr_name(const std::string& n) {
    if (n.empty()) return "empty xattr name";
    return first(check_len(n.size(), kMaxXattrName, "xattr name"), check_no_nul(n, "xattr name"));
}
Problem check(const Setxattr& m) {
    return first(check_path(m.path, true, "path"), check_xattr_name(m.name), check_len(m.value.size(), kMaxXattrValue, "xattr value"));
}

void put(Writer& w, const Removexattr& m) { w.u64(m.seq); w.str(m.path); w.str(m.name); }
void get(Reader& r, Removexattr& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.name = r.str(kMaxXattrName, "xattr name"); }
Problem check(const Removexattr& m) { return first(check_path(m.path, true, "path"), check_xattr_name(m.name)); }

void put(Writer& w, const WriteRange& m) { w.u64(m.seq); w.str(m.path); w.u64(m.offset); w.bytes(m.data); }
void get(Reader& r, WriteRange& m) { m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.offset = r.u64(); m.data = r.bytes(kMaxChunk, "data"); }
Problem check(const WriteRange& m) {
    return first(check_path(m.path, false, "path"), check_len(m.data.size(), kMaxChunk, "data"),
                 m.offset > (std::uint64_t{1} << 62) ? Problem("write offset out of range") : Problem());
}

void put(Writer& w, const ContentBegin& m) {
    w.u64(m.seq); w.str(m.path); w.u8(static_cast<std::uint8_t>(m.encoding)); w.u32(m.mode); w.u32(m.uid); w.u32(m.gid);
    w.u64(m.size); put_ts(w, m.atime); put_ts(w, m.mtime);
}
void get(Reader& r, ContentBegin& m) {
    m.seq = r.u64(); m.path = r.str(kMaxPath, "path"); m.encoding = static_cast<ContentEncoding>(r.u8()); m.mode = r.u32();
    m.uid = r.u32(); m.gid = r.u32(); m.size = r.u64(); m.atime = get_ts(r); m.mtime = get_ts(r);
}
Problem check(const ContentBegin& m) {
    auto e = static_cast<std::uint8_t>(m.encoding);
    return first(check_path(m.path, false, "path"), e > 1 ? Problem("bad content encoding") : Problem(),
                 (m.mode & ~07777u) ? Problem("content mode has type bits") : Problem(),
                 m.size > (std::uint64_t{1} << 62) ? Problem("content size out of range") : Problem(),
                 check_ts(m.atime, "atime"), check_ts(m.mtime, "mtime"));
}

void put(Writer& w, const ContentChunk& m) { w.u64(m.seq); w.bytes(m.data); }
void get(Reader& r, ContentChunk& m) { m.seq = r.u64(); m.data = r.bytes(kMaxChunk, "data"); }
Problem check(const ContentChunk& m) {
    return first(check_len(m.data.size(), kMaxChunk, "data"), m.data.empty() ? Problem("empty content chunk") : Problem());
}

void put(Writer& w, const ContentCommit& m) { w.u64(m.seq); w.raw(m.hash); }
void get(Reader& r, ContentCommit& m) { m.seq = r.u64(); r.raw(m.hash.data(), m.hash.size(), "hash"); }
Problem check(const ContentCommit&) { return {}; }

void put(Writer& w, const ContentAbort& m) { w.u64(m.seq); }
void get(Reader& r, ContentAbort& m) { m.seq = r.u64(); }
Problem check(const ContentAbort&) { return {}; }

// ---- queries ----
void put(Writer& w, const SignatureRequest& m) { w.u64(m.id); w.str(m.path); w.u32(m.block_len); w.u32(m.strong_len); }
void get(Reader& r, SignatureRequest& m) { m.id = r.u64(); m.path = r.str(kMaxPath, "path"); m.block_len = r.u32(); m.strong_len = r.u32(); }
Problem check(const SignatureRequest& m) {
    return first(check_path(m.path, false, "path"),
                 m.block_len > (1u << 24) ? Problem("signature block_len out of range") : Problem(),
                 m.strong_len > 64 ? Problem("signature strong_len out of range") : Problem());
}

void put(Writer& w, const ListRequest& m) { w.u64(m.id); w.str(m.path); w.u32(m.flags); }
void get(Reader& r, ListRequest& m) { m.id = r.u64(); m.path = r.str(kMaxPath, "path"); m.flags = r.u32(); }
Problem check(const ListRequest& m) {
    return first(check_path(m.path, true, "path"),
                 (m.flags & ~(kListRecursive | kListChecksums | kListXattrs)) ? Problem("bad list flags") : Problem());
}

void put(Writer& w, const Fsync& m) { w.u64(m.id); w.str(m.path); }
void get(Reader& r, Fsync& m) { m.id = r.u64(); m.path = r.str(kMaxPath, "path"); }
Problem check(const Fsync& m) { return check_path(m.path, true, "path"); }

void put(Writer& w, const Barrier& m) { w.u64(m.id); w.u8(m.durable ? 1 : 0); }
void get(Reader& r, Barrier& m) {
    m.id = r.u64();
    std::uint8_t d = r.u8();
    if (d > 1) r.set_error("bad barrier durable flag");
    m.durable = d == 1;
}
Problem check(const Barrier&) { return {}; }

// ---- replies ----
void put(Writer& w, const Ack& m) { w.u64(m.seq); w.u32(m.flags); w.i32(m.err); w.str(m.message); }
void get(Reader& r, Ack& m) { m.seq = r.u64(); m.flags = r.u32(); m.err = r.i32(); m.message = r.str(kMaxMessage, "message"); }
Problem check(const Ack& m) {
    if (m.flags & ~(kAckCumulative | kAckDurable)) return "bad ack flags";
    if ((m.flags & kAckDurable) && !(m.flags & kAckCumulative)) return "durable ack must be cumulative";
    if ((m.flags & kAckCumulative) && m.err != 0) return "cumulative ack with an error";
    if (!(m.flags & kAckCumulative) && m.err <= 0) return "individual ack needs a positive errno";
    return check_len(m.message.size(), kMaxMessage, "message");
}

void put(Writer& w, const SignatureChunk& m) { w.u64(m.id); w.bytes(m.data); }
void get(Reader& r, SignatureChunk& m) { m.id = r.u64(); m.data = r.bytes(kMaxChunk, "data"); }
Problem check(const SignatureChunk& m) {
    return first(check_len(m.data.size(), kMaxChunk, "data"), m.data.empty() ? Problem("empty signature chunk") : Problem());
}

void put_entry(Writer& w, const ListEntry& e) {
    w.str(e.path); w.u8(static_cast<std::uint8_t>(e.type)); w.u32(e.mode); w.u32(e.uid); w.u32(e.gid); w.u64(e.size);
    put_ts(w, e.mtime); w.u64(e.rdev); w.u32(e.nlink); w.u64(e.ino); w.str(e.target);
    // Presence bits: 1 = content hash, 2 = xattr summary (only sent when asked for, so an
    // older peer never sees bit 2).
    w.u8(static_cast<std::uint8_t>((e.hash ? 1 : 0) | (e.xattrs ? 2 : 0)));
    if (e.hash) w.raw(*e.hash);
    if (e.xattrs) {
        w.u32(static_cast<std::uint32_t>(e.xattrs->names.size()));
        for (const auto& n : e.xattrs->names) w.str(n);
        w.raw(e.xattrs->digest);
    }
}
void get_entry(Reader& r, ListEntry& e) {
    e.path = r.str(kMaxPath, "entry path"); e.type = static_cast<NodeType>(r.u8()); e.mode = r.u32(); e.uid = r.u32();
    e.gid = r.u32(); e.size = r.u64(); e.mtime = get_ts(r); e.rdev = r.u64(); e.nlink = r.u32(); e.ino = r.u64();
    e.target = r.str(kMaxSymlinkTarget, "entry target");
    std::uint8_t has = r.u8();
    if (has > 3) return r.set_error("bad entry presence flags");
    if (has & 1) {
        Hash128 h{};
        r.raw(h.data(), h.size(), "entry hash");
        e.hash = h;
    }
    if (has & 2) {
        std::uint32_t n = r.u32();
        if (!r.ok()) return;
        // Each name takes at least 5 bytes (length + 1 byte): a hostile count cannot reserve memory.
        if (n > kMaxXattrNames || n > r.remaining() / 5) return r.set_error("bad entry xattr count");
        XattrSummary x;
        x.names.resize(n);
        for (auto& name : x.names) name = r.str(kMaxXattrName, "entry xattr name");
        r.raw(x.digest.data(), x.digest.size(), "entry xattr digest");
        e.xattrs = std::move(x);
    }
}
Problem check_xattr_names(const std::optional<XattrSummary>& x) {
    if (!x) return {};
    if (x->names.size() > kMaxXattrNames) return Problem("too many xattr names");
    for (std::size_t i = 0; i < x->names.size(); ++i) {
        const std::string& n = x->names[i];
        if (n.empty()) return Problem("empty xattr name");
        if (auto p = first(check_len(n.size(), kMaxXattrName, "xattr name"), check_no_nul(n, "xattr name")); !p.empty()) return p;
        if (i > 0 && !(x->names[i - 1] < n)) return Problem("xattr names not sorted and unique");
    }
    return {};
}
Problem check_entry(const ListEntry& e) {
    auto t = static_cast<std::uint8_t>(e.type);
    return first(check_path(e.path, true, "entry path"), t < 1 || t > 7 ? Problem("bad entry type") : Problem(),
                 check_len(e.target.size(), kMaxSymlinkTarget, "entry target"), check_no_nul(e.target, "entry target"),
                 check_ts(e.mtime, "entry mtime"), check_xattr_names(e.xattrs));
}
void put(Writer& w, const ListChunk& m) {
    w.u64(m.id);
    w.u32(static_cast<std::uint32_t>(m.entries.size()));
    for (const auto& e : m.entries) put_entry(w, e);
}
void get(Reader& r, ListChunk& m) {
    m.id = r.u64();
    std::uint32_t n = r.u32();
    if (!r.ok()) return;
    // Each entry takes at least 56 bytes on the wire, so n is bounded by the payload too;
    // checking both keeps a hostile count from reserving memory.
    if (n == 0 || n > kMaxListEntries || n > r.remaining() / 56) return r.set_error("bad list entry count");
    m.entries.resize(n);
    for (auto& e : m.entries) {
        get_entry(r, e);
        if (!r.ok()) return;
    }
}
Problem check(const ListChunk& m) {
    if (m.entries.empty() || m.entries.size() > kMaxListEntries) return "bad list entry count";
    for (const auto& e : m.entries)
        if (Problem p = check_entry(e); !p.empty()) return p;
    return {};
}

void put(Writer& w, const Done& m) {
    w.u64(m.id); w.i32(m.err); w.u32(m.flags); w.u64(m.applied_seq); w.u64(m.size); put_ts(w, m.mtime); w.str(m.message);
}
void get(Reader& r, Done& m) {
    m.id = r.u64(); m.err = r.i32(); m.flags = r.u32(); m.applied_seq = r.u64(); m.size = r.u64(); m.mtime = get_ts(r);
    m.message = r.str(kMaxMessage, "message");
}
Problem check(const Done& m) {
    return first((m.flags & ~kDoneDurable) ? Problem("bad done flags") : Problem(), m.err < 0 ? Problem("negative errno") : Problem(),
                 check_ts(m.mtime, "mtime"), check_len(m.message.size(), kMaxMessage, "message"));
}

template <class T>
constexpr MsgType type_for();
#define SFS_NATIVE_TYPE(T) template <> constexpr MsgType type_for<T>() { return MsgType::T; }
SFS_NATIVE_TYPE(Hello) SFS_NATIVE_TYPE(HelloReply) SFS_NATIVE_TYPE(Fatal) SFS_NATIVE_TYPE(Mkdir)
SFS_NATIVE_TYPE(Create) SFS_NATIVE_TYPE(Mknod) SFS_NATIVE_TYPE(Symlink) SFS_NATIVE_TYPE(Link)
SFS_NATIVE_TYPE(Rename) SFS_NATIVE_TYPE(Unlink) SFS_NATIVE_TYPE(Rmdir) SFS_NATIVE_TYPE(Setattr)
SFS_NATIVE_TYPE(Setxattr) SFS_NATIVE_TYPE(Removexattr) SFS_NATIVE_TYPE(WriteRange)
SFS_NATIVE_TYPE(ContentBegin) SFS_NATIVE_TYPE(ContentChunk) SFS_NATIVE_TYPE(ContentCommit)
SFS_NATIVE_TYPE(ContentAbort) SFS_NATIVE_TYPE(SignatureRequest) SFS_NATIVE_TYPE(ListRequest)
SFS_NATIVE_TYPE(Fsync) SFS_NATIVE_TYPE(Barrier) SFS_NATIVE_TYPE(Ack) SFS_NATIVE_TYPE(SignatureChunk)
SFS_NATIVE_TYPE(ListChunk) SFS_NATIVE_TYPE(Done)
#undef SFS_NATIVE_TYPE

template <class T>
Result<Message> decode_as(std::span<const std::uint8_t> payload) {
    T m{};
    Reader r(payload);
    get(r, m);
    if (!r.ok()) return fail(std::string(to_string(type_for<T>())) + ": " + r.error(), EPROTO);
    if (!r.at_end())
        return fail(std::string(to_string(type_for<T>())) + ": " + std::to_string(r.remaining()) + " trailing bytes", EPROTO);
    if (Problem p = check(m); !p.empty()) return fail(std::string(to_string(type_for<T>())) + ": " + p, EPROTO);
    return Message(std::move(m));
}

}  // namespace

const char* to_string(MsgType type) noexcept {
    switch (type) {
        case MsgType::Hello: return "Hello";
        case MsgType::HelloReply: return "HelloReply";
        case MsgType::Fatal: return "Fatal";
        case MsgType::Mkdir: return "Mkdir";
        case MsgType::Create: return "Create";
        case MsgType::Mknod: return "Mknod";
        case MsgType::Symlink: return "Symlink";
        case MsgType::Link: return "Link";
        case MsgType::Rename: return "Rename";
        case MsgType::Unlink: return "Unlink";
        case MsgType::Rmdir: return "Rmdir";
        case MsgType::Setattr: return "Setattr";
        case MsgType::Setxattr: return "Setxattr";
        case MsgType::Removexattr: return "Removexattr";
        case MsgType::WriteRange: return "WriteRange";
        case MsgType::ContentBegin: return "ContentBegin";
        case MsgType::ContentChunk: return "ContentChunk";
        case MsgType::ContentCommit: return "ContentCommit";
        case MsgType::ContentAbort: return "ContentAbort";
        case MsgType::SignatureRequest: return "SignatureRequest";
        case MsgType::ListRequest: return "ListRequest";
        case MsgType::Fsync: return "Fsync";
        case MsgType::Barrier: return "Barrier";
        case MsgType::Ack: return "Ack";
        case MsgType::SignatureChunk: return "SignatureChunk";
        case MsgType::ListChunk: return "ListChunk";
        case MsgType::Done: return "Done";
    }
    return "unknown";
}

MsgType type_of(const Message& message) noexcept {
    return std::visit([](const auto& m) { return type_for<std::decay_t<decltype(m)>>(); }, message);
}

std::optional<std::uint64_t> seq_of(const Message& message) noexcept {
    return std::visit(
        [](const auto& m) -> std::optional<std::uint64_t> {
            if constexpr (is_mutation(type_for<std::decay_t<decltype(m)>>())) return m.seq;
            else return std::nullopt;
        },
        message);
}

Result<void> encode(const Message& message, std::vector<std::uint8_t>& out) {
    return std::visit(
        [&out](const auto& m) -> Result<void> {
            using T = std::decay_t<decltype(m)>;
            if (Problem p = check(m); !p.empty())
                return fail(std::string("cannot encode ") + to_string(type_for<T>()) + ": " + p, EINVAL);
            const std::size_t start = out.size();
            Writer w(out);
            w.u32(0);  // patched below
            w.u8(static_cast<std::uint8_t>(type_for<T>()));
            put(w, m);
            const std::size_t payload = out.size() - start - kFrameHeaderSize;
            if (payload > kMaxFramePayload) {
                out.resize(start);
                return fail(std::string("cannot encode ") + to_string(type_for<T>()) + ": frame of " +
                                std::to_string(payload) + " bytes exceeds the cap",
                            EMSGSIZE);
            }
            for (int i = 0; i < 4; ++i) out[start + i] = static_cast<std::uint8_t>(payload >> (8 * i));
            return {};
        },
        message);
}

Result<std::vector<std::uint8_t>> encode(const Message& message) {
    std::vector<std::uint8_t> out;
    if (auto r = encode(message, out); !r) return std::unexpected(r.error());
    return out;
}

Result<Message> decode(std::uint8_t type, std::span<const std::uint8_t> payload) {
    if (payload.size() > kMaxFramePayload) return fail("frame payload exceeds the cap", EPROTO);
    switch (static_cast<MsgType>(type)) {
        case MsgType::Hello: return decode_as<Hello>(payload);
        case MsgType::HelloReply: return decode_as<HelloReply>(payload);
        case MsgType::Fatal: return decode_as<Fatal>(payload);
        case MsgType::Mkdir: return decode_as<Mkdir>(payload);
        case MsgType::Create: return decode_as<Create>(payload);
        case MsgType::Mknod: return decode_as<Mknod>(payload);
        case MsgType::Symlink: return decode_as<Symlink>(payload);
        case MsgType::Link: return decode_as<Link>(payload);
        case MsgType::Rename: return decode_as<Rename>(payload);
        case MsgType::Unlink: return decode_as<Unlink>(payload);
        case MsgType::Rmdir: return decode_as<Rmdir>(payload);
        case MsgType::Setattr: return decode_as<Setattr>(payload);
        case MsgType::Setxattr: return decode_as<Setxattr>(payload);
        case MsgType::Removexattr: return decode_as<Removexattr>(payload);
        case MsgType::WriteRange: return decode_as<WriteRange>(payload);
        case MsgType::ContentBegin: return decode_as<ContentBegin>(payload);
        case MsgType::ContentChunk: return decode_as<ContentChunk>(payload);
        case MsgType::ContentCommit: return decode_as<ContentCommit>(payload);
        case MsgType::ContentAbort: return decode_as<ContentAbort>(payload);
        case MsgType::SignatureRequest: return decode_as<SignatureRequest>(payload);
        case MsgType::ListRequest: return decode_as<ListRequest>(payload);
        case MsgType::Fsync: return decode_as<Fsync>(payload);
        case MsgType::Barrier: return decode_as<Barrier>(payload);
        case MsgType::Ack: return decode_as<Ack>(payload);
        case MsgType::SignatureChunk: return decode_as<SignatureChunk>(payload);
        case MsgType::ListChunk: return decode_as<ListChunk>(payload);
        case MsgType::Done: return decode_as<Done>(payload);
    }
    return fail("unknown frame type 0x" + [type] {
        static const char* hex = "0123456789abcdef";
        return std::string{hex[type >> 4], hex[type & 15]};
    }(), EPROTO);
}

void FrameDecoder::feed(std::span<const std::uint8_t> bytes) {
    // Compact once the consumed prefix dominates, so the buffer stays O(one frame).
    if (start_ > 0 && start_ >= buffer_.size() / 2) {
        buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
        start_ = 0;
    }
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

Result<std::optional<Message>> FrameDecoder::next() {
    const std::size_t avail = buffer_.size() - start_;
    if (avail < kFrameHeaderSize) return std::optional<Message>();
    const std::uint8_t* h = buffer_.data() + start_;
    const std::uint32_t len = std::uint32_t{h[0]} | std::uint32_t{h[1]} << 8 | std::uint32_t{h[2]} << 16 |
                              std::uint32_t{h[3]} << 24;
    if (len > kMaxFramePayload)
        return fail("frame length " + std::to_string(len) + " exceeds the cap of " + std::to_string(kMaxFramePayload),
                    EPROTO);
    if (avail < kFrameHeaderSize + std::size_t{len}) return std::optional<Message>();
    const std::uint8_t type = h[4];
    auto message = decode(type, std::span<const std::uint8_t>(h + kFrameHeaderSize, len));
    start_ += kFrameHeaderSize + len;
    if (start_ == buffer_.size()) {
        buffer_.clear();
        start_ = 0;
    }
    if (!message) return std::unexpected(message.error());
    return std::optional<Message>(std::move(*message));
}

Result<void> validate_path(std::string_view path, bool allow_root) {
    if (path.empty()) {
        if (allow_root) return {};
        return fail("empty path (the module root is not allowed here)", EINVAL);
    }
    if (path.size() > kMaxPath) return fail("path longer than " + std::to_string(kMaxPath), ENAMETOOLONG);
    if (path.front() == '/') return fail("absolute path", EINVAL);
    std::size_t pos = 0;
    while (pos <= path.size()) {
        std::size_t slash = path.find('/', pos);
        if (slash == std::string_view::npos) slash = path.size();
        std::string_view comp = path.substr(pos, slash - pos);
        if (comp.empty()) return fail("empty path component", EINVAL);
        if (comp == "." || comp == "..") return fail("'.' or '..' path component", EINVAL);
        if (comp.size() > kMaxName) return fail("path component longer than 255", ENAMETOOLONG);
        if (comp.find('\0') != std::string_view::npos) return fail("NUL in path", EINVAL);
        pos = slash + 1;
    }
    return {};
}

}  // namespace sfs::protocol::native
