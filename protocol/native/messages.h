// The native syncfs <-> syncfsd protocol: message types and their wire encoding.
//
// Specified in docs/protocol.md (read that first; this header follows it field by field).
//
// Design note
//  - A frame is `u32 payload_length (LE) | u8 type | payload`. payload_length never exceeds
//    kMaxFramePayload; a larger announced length is a protocol error before anything is
//    allocated. Every integer is little-endian; strings and byte blobs are `u32 length | bytes`
//    with a per-field cap (kMaxPath, kMaxXattrValue, ...). A payload must be consumed exactly:
//    trailing bytes are an error, as is any short read. Decoding never trusts a length it has
//    not checked against both its cap and the bytes actually present.
//  - Mutations (Mkdir ... ContentAbort) carry `seq`: the replicator's journal position. Seqs of
//    mutations strictly increase within a stream (across reconnects too), which is what lets the
//    mirror skip a replay it already applied. One content transfer (ContentBegin, Chunk*,
//    Commit|Abort) is ONE mutation: all its frames carry the same seq.
//  - Queries (SignatureRequest, ListRequest, Fsync, Barrier) carry `id`, an opaque request id
//    echoed in their replies; they are never deduplicated and do not take part in seq order.
//    Replies to a query (SignatureChunk*, ListChunk*) end with exactly one Done.
//  - The server processes frames strictly in arrival order, so a query's reply reflects every
//    mutation sent before it.
//  - This layer is pure: no I/O, no filesystem; it is fuzzed alone (tests/protocol/native_*).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/result.h"

namespace sfs::protocol::native {

inline constexpr std::uint16_t kProtocolVersion = 2;
inline constexpr std::uint16_t kXattrListVersion = 2;  // first version with kListXattrs
inline constexpr std::uint16_t kMinProtocolVersion = 1;
inline constexpr std::uint32_t kHelloMagic = 0x4e534653;  // "SFSN" as LE bytes 53 46 53 4e

// Hard caps (bytes). Every field is checked against its cap when decoding AND encoding.
inline constexpr std::uint32_t kFrameHeaderSize = 5;
inline constexpr std::uint32_t kMaxFramePayload = 4u << 20;   // 4 MiB
inline constexpr std::uint32_t kMaxChunk = 1u << 20;          // data bytes in one frame
inline constexpr std::uint32_t kMaxPath = 4096;               // PATH_MAX
inline constexpr std::uint32_t kMaxName = 255;                // NAME_MAX (per component)
inline constexpr std::uint32_t kMaxSymlinkTarget = 4095;
inline constexpr std::uint32_t kMaxXattrName = 255;
inline constexpr std::uint32_t kMaxXattrValue = 65536;        // XATTR_SIZE_MAX
inline constexpr std::uint32_t kMaxXattrNames = 1024;         // names of one node in a ListEntry
inline constexpr std::uint32_t kMaxMessage = 4096;            // human-readable error text
inline constexpr std::uint32_t kMaxStreamId = 256;
inline constexpr std::uint32_t kMaxListEntries = 4096;        // per ListChunk

enum class MsgType : std::uint8_t {
    // Handshake and connection-fatal errors.
    Hello = 0x01,        // client -> server
    HelloReply = 0x02,   // server -> client
    Fatal = 0x03,        // either direction, then the sender closes
    // Mutations (client -> server), each with a seq.
    Mkdir = 0x10,
    Create = 0x11,
    Mknod = 0x12,
    Symlink = 0x13,
    Link = 0x14,
    Rename = 0x15,
    Unlink = 0x16,
    Rmdir = 0x17,
    Setattr = 0x18,
    Setxattr = 0x19,
    Removexattr = 0x1a,
    WriteRange = 0x1b,
    ContentBegin = 0x1c,
    ContentChunk = 0x1d,
    ContentCommit = 0x1e,
    ContentAbort = 0x1f,
    // Queries (client -> server), each with an id.
    SignatureRequest = 0x30,
    ListRequest = 0x31,
    Fsync = 0x32,
    Barrier = 0x33,
    // Replies (server -> client).
    Ack = 0x40,
    SignatureChunk = 0x41,
    ListChunk = 0x42,
    Done = 0x43,
};

const char* to_string(MsgType type) noexcept;

// Seconds + nanoseconds since the epoch (nsec < 1e9, checked).
struct Timestamp {
    std::int64_t sec = 0;
    std::uint32_t nsec = 0;
    bool operator==(const Timestamp&) const = default;
};

// ---- handshake ---------------------------------------------------------------------------

// First frame of the client after `@RSYNCD: OK`. stream_id names the replication stream
// (one per source tree and mirror URL); the server keeps the highest applied seq per stream.
struct Hello {
    std::uint32_t magic = kHelloMagic;
    std::uint16_t version = kProtocolVersion;
    std::uint32_t flags = 0;  // reserved, 0
    std::string stream_id;    // 1..kMaxStreamId bytes, printable ASCII
    bool operator==(const Hello&) const = default;
};

enum ServerCaps : std::uint32_t {
    kCapReadOnly = 1u << 0,   // module is read only: every mutation will fail with EROFS
    kCapOwner = 1u << 1,      // server runs as root: uid/gid/mknod of devices are applied
    kCapXattr = 1u << 2,      // module filesystem supports user xattrs
    kCapDelta = 1u << 3,      // librsync signature/delta supported
    kCapMungeSymlinks = 1u << 4,
};

struct HelloReply {
    std::uint16_t version = kProtocolVersion;  // chosen version (<= client's)
    std::uint32_t caps = 0;                    // ServerCaps
    std::uint32_t max_frame = kMaxFramePayload;
    std::uint64_t applied_seq = 0;  // highest mutation seq applied for this stream (0 = none)
    bool operator==(const HelloReply&) const = default;
};

// Connection-fatal error (protocol violation, unsupported version). The sender closes next.
struct Fatal {
    std::int32_t err = 0;  // errno-style code, EPROTO for protocol violations
    std::string message;
    bool operator==(const Fatal&) const = default;
};

// ---- mutations -----------------------------------------------------------------------------
// Paths are relative to the module root, '/'-separated, no leading '/', no "." or ".."
// component, no empty component, no NUL; "" is the root itself (see validate_path()).

// Bits of Setattr::mask; same values as fs/change_record.h AttrMask.
enum AttrMask : std::uint32_t {
    kAttrMode = 1u << 0,
    kAttrUid = 1u << 1,
    kAttrGid = 1u << 2,
    kAttrSize = 1u << 3,
    kAttrAtime = 1u << 4,
    kAttrMtime = 1u << 5,
    kAttrAll = (1u << 6) - 1,
};

// Rename flags; same values as Linux RENAME_*.
enum RenameFlags : std::uint32_t {
    kRenameNoReplace = 1u << 0,
    kRenameExchange = 1u << 1,
    kRenameAll = kRenameNoReplace | kRenameExchange,
};

struct Mkdir {
    std::uint64_t seq = 0;
    std::string path;
    std::uint32_t mode = 0;  // permission bits (07777)
    std::uint32_t uid = 0, gid = 0;
    bool operator==(const Mkdir&) const = default;
};

// A new, empty regular file (replaces any non-directory at path: the source made a new inode).
struct Create {
    std::uint64_t seq = 0;
    std::string path;
    std::uint32_t mode = 0;
    std::uint32_t uid = 0, gid = 0;
    bool operator==(const Create&) const = default;
};

// Fifo, socket, char/block device (mode carries S_IF* type bits), or regular file.
struct Mknod {
    std::uint64_t seq = 0;
    std::string path;
    std::uint32_t mode = 0;
    std::uint64_t rdev = 0;
    std::uint32_t uid = 0, gid = 0;
    bool operator==(const Mknod&) const = default;
};

struct Symlink {
    std::uint64_t seq = 0;
    std::string path;
    std::string target;  // 1..kMaxSymlinkTarget bytes, no NUL; stored verbatim (or munged)
    std::uint32_t uid = 0, gid = 0;
    bool operator==(const Symlink&) const = default;
};

struct Link {
    std::uint64_t seq = 0;
    std::string path;      // new name
    std::string existing;  // an existing name of the same node
    bool operator==(const Link&) const = default;
};

struct Rename {
    std::uint64_t seq = 0;
    std::string from;
    std::string to;
    std::uint32_t flags = 0;  // RenameFlags
    bool operator==(const Rename&) const = default;
};

struct Unlink {
    std::uint64_t seq = 0;
    std::string path;
    bool operator==(const Unlink&) const = default;
};

struct Rmdir {
    std::uint64_t seq = 0;
    std::string path;
    bool operator==(const Rmdir&) const = default;
};

struct Setattr {
    std::uint64_t seq = 0;
    std::string path;
    std::uint32_t mask = 0;  // AttrMask: which of the fields below apply
    std::uint32_t mode = 0;
    std::uint32_t uid = 0, gid = 0;
    std::uint64_t size = 0;
    Timestamp atime, mtime;
    bool operator==(const Setattr&) const = default;
};

struct Setxattr {
    std::uint64_t seq = 0;
    std::string path;
    std::string name;   // 1..kMaxXattrName, e.g. "user.foo", "security.selinux", "system.posix_acl_access"
    std::string value;  // 0..kMaxXattrValue bytes (binary)
    bool operator==(const Setxattr&) const = default;
};

struct Removexattr {
    std::uint64_t seq = 0;
    std::string path;
    std::string name;
    bool operator==(const Removexattr&) const = default;
};

// Bytes written in place into an existing regular file (see docs/protocol.md "WriteRange").
struct WriteRange {
    std::uint64_t seq = 0;
    std::string path;
    std::uint64_t offset = 0;
    std::vector<std::uint8_t> data;  // 0..kMaxChunk bytes
    bool operator==(const WriteRange&) const = default;
};

enum class ContentEncoding : std::uint8_t {
    Literal = 0,  // chunks are the new file's bytes in order
    Delta = 1,    // chunks are a librsync delta against the mirror's current file at `path`
};

// Starts a whole-file (or delta) replacement of `path`: the server writes a temp file in the
// same directory, applies the attributes, verifies the hash on commit, then renames it over.
struct ContentBegin {
    std::uint64_t seq = 0;
    std::string path;
    ContentEncoding encoding = ContentEncoding::Literal;
    std::uint32_t mode = 0;
    std::uint32_t uid = 0, gid = 0;
    std::uint64_t size = 0;  // final size of the new content
    Timestamp atime, mtime;
    bool operator==(const ContentBegin&) const = default;
};

struct ContentChunk {
    std::uint64_t seq = 0;           // the ContentBegin's seq
    std::vector<std::uint8_t> data;  // 1..kMaxChunk bytes
    bool operator==(const ContentChunk&) const = default;
};

// XXH3-128 of the final content, canonical (big-endian) byte order as XXH128_canonicalFromHash.
using Hash128 = std::array<std::uint8_t, 16>;

struct ContentCommit {
    std::uint64_t seq = 0;
    Hash128 hash{};
    bool operator==(const ContentCommit&) const = default;
};

// The client gave up on this transfer (e.g. the source file vanished). The server deletes the
// temp file and acks the seq with success: the op had no effect.
struct ContentAbort {
    std::uint64_t seq = 0;
    bool operator==(const ContentAbort&) const = default;
};

// ---- queries -------------------------------------------------------------------------------

// librsync signature of the mirror's file at path. Replies: SignatureChunk* then Done.
// block_len/strong_len 0 = let the server pick (rs_sig_args). Done.size/mtime describe the
// basis the signature was computed from.
struct SignatureRequest {
    std::uint64_t id = 0;
    std::string path;
    std::uint32_t block_len = 0;
    std::uint32_t strong_len = 0;
    bool operator==(const SignatureRequest&) const = default;
};

enum ListFlags : std::uint32_t {
    kListRecursive = 1u << 0,
    kListChecksums = 1u << 1,  // fill ListEntry::hash for regular files (XXH3-128)
    kListXattrs = 1u << 2,     // fill ListEntry::xattrs for every node but symlinks
};

// Lists `path` (the node itself first, then its subtree when recursive). Replies: ListChunk*
// then Done. Entries come in depth-first pre-order, siblings sorted by byte order of name.
struct ListRequest {
    std::uint64_t id = 0;
    std::string path;
    std::uint32_t flags = 0;
    bool operator==(const ListRequest&) const = default;
};

// Makes `path` durable (fsync file, and its directory). Reply: Done with kDoneDurable.
struct Fsync {
    std::uint64_t id = 0;
    std::string path;
    bool operator==(const Fsync&) const = default;
};

// Reply Done is sent when every mutation sent before it has been processed; with durable,
// after everything they touched (and the server's seq state) has been fsynced.
struct Barrier {
    std::uint64_t id = 0;
    bool durable = false;
    bool operator==(const Barrier&) const = default;
};

// ---- replies -------------------------------------------------------------------------------

enum AckFlags : std::uint32_t {
    // Every mutation with seq <= Ack::seq has been processed; failures among them were
    // reported by earlier individual (non-cumulative) Acks. err must be 0.
    kAckCumulative = 1u << 0,
    // With kAckCumulative: everything those mutations wrote is durable on the mirror.
    kAckDurable = 1u << 1,
};

// Individual Ack (flags without kAckCumulative): the mutation `seq` failed with err (errno)
// and message (names the path). Sent before the cumulative Ack that covers seq.
struct Ack {
    std::uint64_t seq = 0;
    std::uint32_t flags = 0;
    std::int32_t err = 0;
    std::string message;
    bool operator==(const Ack&) const = default;
};

struct SignatureChunk {
    std::uint64_t id = 0;
    std::vector<std::uint8_t> data;  // 1..kMaxChunk bytes of the librsync signature stream
    bool operator==(const SignatureChunk&) const = default;
};

enum class NodeType : std::uint8_t { Regular = 1, Directory, Symlink, Fifo, Socket, CharDev, BlockDev };

// A node's extended attributes as a listing reports them: the names (so that a peer can
// remove the ones it lacks) and a digest over names and values (xattr_summary.h).
struct XattrSummary {
    std::vector<std::string> names;  // sorted, 0..kMaxXattrNames, each 1..kMaxXattrName
    Hash128 digest{};
    bool operator==(const XattrSummary&) const = default;
};

struct ListEntry {
    std::string path;  // relative to the module root
    NodeType type = NodeType::Regular;
    std::uint32_t mode = 0;  // full st_mode
    std::uint32_t uid = 0, gid = 0;
    std::uint64_t size = 0;
    Timestamp mtime;
    std::uint64_t rdev = 0;
    std::uint32_t nlink = 0;
    std::uint64_t ino = 0;  // mirror st_ino: equal ino => hardlinks of one node
    std::string target;     // symlinks
    std::optional<Hash128> hash;
    std::optional<XattrSummary> xattrs;  // with kListXattrs, for every type but symlinks
    bool operator==(const ListEntry&) const = default;
};

struct ListChunk {
    std::uint64_t id = 0;
    std::vector<ListEntry> entries;  // 1..kMaxListEntries
    bool operator==(const ListChunk&) const = default;
};

enum DoneFlags : std::uint32_t {
    kDoneDurable = 1u << 0,
};

struct Done {
    std::uint64_t id = 0;
    std::int32_t err = 0;
    std::uint32_t flags = 0;        // DoneFlags
    std::uint64_t applied_seq = 0;  // highest mutation seq processed when this was sent
    std::uint64_t size = 0;         // SignatureRequest: basis size
    Timestamp mtime;                // SignatureRequest: basis mtime
    std::string message;
    bool operator==(const Done&) const = default;
};

using Message = std::variant<Hello, HelloReply, Fatal, Mkdir, Create, Mknod, Symlink, Link,
                             Rename, Unlink, Rmdir, Setattr, Setxattr, Removexattr, WriteRange,
                             ContentBegin, ContentChunk, ContentCommit, ContentAbort,
                             SignatureRequest, ListRequest, Fsync, Barrier, Ack, SignatureChunk,
                             ListChunk, Done>;

MsgType type_of(const Message& message) noexcept;

// True for the mutation types (those with a seq).
constexpr bool is_mutation(MsgType type) noexcept {
    return static_cast<std::uint8_t>(type) >= 0x10 && static_cast<std::uint8_t>(type) <= 0x1f;
}
// The seq of a mutation, or nullopt for other messages.
std::optional<std::uint64_t> seq_of(const Message& message) noexcept;

// ---- encoding --------------------------------------------------------------------------------

// Appends one complete frame for `message` to `out`. Fails (without touching `out`) when a
// field breaks its cap or the frame would exceed kMaxFramePayload: the caller must split data.
Result<void> encode(const Message& message, std::vector<std::uint8_t>& out);

// Convenience: one frame as a new buffer.
Result<std::vector<std::uint8_t>> encode(const Message& message);

// Decodes one payload of a frame whose header said `type`. Strict: unknown type, short or
// trailing bytes, a field above its cap, a bad enum/flag value -> error with a reason.
Result<Message> decode(std::uint8_t type, std::span<const std::uint8_t> payload);

// Incremental frame splitter for a byte stream. feed() raw bytes, then call next() until it
// returns nullopt (needs more bytes). An error is final: the connection must be dropped.
class FrameDecoder {
public:
    void feed(std::span<const std::uint8_t> bytes);
    Result<std::optional<Message>> next();
    // Bytes buffered but not yet decoded.
    std::size_t buffered() const noexcept { return buffer_.size() - start_; }

private:
    std::vector<std::uint8_t> buffer_;
    std::size_t start_ = 0;
};

// A path as the protocol allows it (see the comment above Mkdir). allow_root: "" accepted.
Result<void> validate_path(std::string_view path, bool allow_root);

}  // namespace sfs::protocol::native
