// The protocol-27 file list (flist.c send_file_entry / recv_file_entry, uidlist.c).
//
// One entry: a flags byte (0 ends the list), the name as a suffix of the previous name,
// length (longint), mtime (int32) unless SAME_TIME, mode unless SAME_MODE, uid/gid (int32)
// with -o/-g unless SAME_*, rdev (int32) for devices/specials with -D unless SAME_RDEV,
// the symlink target (int32 len + bytes) with -l, dev+1/ino (longints) for regular files
// with -H, and the 16-byte MD4 with -c (a null sum for non-regular entries below 28).
// After the list: the uid and gid name lists (unless --numeric-ids) and the io_error int32.
// Encoder and decoder keep the "same as previous" state exactly as rsync does.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "protocol/rsync_checksum.h"
#include "protocol/rsync_wire.h"

namespace sfs::protocol {

inline constexpr std::size_t kMaxPathLen = 4096;          // our bound on a received name
inline constexpr std::size_t kMaxFlistEntries = 10'000'000;

// xflags bits for protocol < 28.
inline constexpr std::uint8_t kXmitTopDir = 0x01;
inline constexpr std::uint8_t kXmitSameMode = 0x02;
inline constexpr std::uint8_t kXmitSameRdevPre28 = 0x04;
inline constexpr std::uint8_t kXmitSameUid = 0x08;
inline constexpr std::uint8_t kXmitSameGid = 0x10;
inline constexpr std::uint8_t kXmitSameName = 0x20;
inline constexpr std::uint8_t kXmitLongName = 0x40;
inline constexpr std::uint8_t kXmitSameTime = 0x80;

struct FlistOptions {
    int protocol = 27;
    bool preserve_uid = false;
    bool preserve_gid = false;
    bool preserve_links = false;
    bool preserve_devices = false;
    bool preserve_specials = false;
    bool preserve_hard_links = false;
    bool always_checksum = false;
    bool preserve_atimes = false;  // -U: a varlong access time after the mode (non-dirs)
    // --delete-missing-args: a named source that does not exist arrives with mode 0 (the
    // receiver deletes that name); otherwise mode 0 is a protocol error.
    bool allow_missing = false;
};

struct FileEntry {
    std::string name;              // wire name, relative ("." is the transfer root)
    std::uint32_t mode = 0;
    std::int64_t size = 0;
    std::int64_t mtime = 0;
    std::int64_t atime = 0;        // -U only
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::uint32_t rdev = 0;        // as on the wire below 28: the sender's dev_t as int32
    std::string link_target;
    std::int64_t dev = -1;         // -H: device (without the +1), -1 when not sent
    std::int64_t ino = 0;
    Digest sum{};                  // -c
    bool top_dir = false;
    bool active = true;            // false: a duplicate dropped by sort_and_clean
    // Sender side: where to find it beneath the module root (module-relative path).
    std::string local_path;
};

bool is_device(std::uint32_t mode);
bool is_special(std::uint32_t mode);   // fifo or socket

class FlistEncoder {
public:
    explicit FlistEncoder(const FlistOptions& o) : opt_(o) {}
    void encode(const FileEntry& e, std::string& out);
    void end(std::string& out) { put_u8(out, 0); }

private:
    FlistOptions opt_;
    std::string lastname_;
    std::uint32_t mode_ = 0;
    std::int64_t mtime_ = 0;
    std::uint32_t uid_ = 0, gid_ = 0, rdev_ = 0;
    bool have_rdev_ = false;
};

class FlistDecoder {
public:
    explicit FlistDecoder(const FlistOptions& o) : opt_(o) {}
    // The next entry, or nullopt at the end marker. Rejects unsafe names (absolute, "..").
    Result<std::optional<FileEntry>> decode(WireReader& in);

private:
    FlistOptions opt_;
    std::string lastname_;
    std::uint32_t mode_ = 0;
    std::int64_t mtime_ = 0;
    std::uint32_t uid_ = 0, gid_ = 0, rdev_ = 0;
    std::int64_t dev_ = 0;
};

// A received name is safe when it is relative and has no ".." component (clean_fname with
// CFN_REFUSE_DOT_DOT_DIRS); returns the normalized name (no "//", no "./" inside).
Result<std::string> sanitize_wire_name(std::string_view name);

// id -> name lists after the file list.
using IdNames = std::map<std::uint32_t, std::string>;
void encode_id_list(const IdNames& ids, std::string& out);
Result<IdNames> decode_id_list(WireReader& in);

// Sort like rsync < 29 (f_name_cmp reduces to a byte compare of the path) and, on the
// receiving side, deactivate duplicates (flist_sort_and_clean): indices are positions.
void sort_file_list(std::vector<FileEntry>& list);
void clean_file_list(std::vector<FileEntry>& list);

}  // namespace sfs::protocol
