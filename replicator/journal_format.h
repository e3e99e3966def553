// On-disk record format of the replication journal (docs/journal.md, "Record format").
//
// Pure encode/decode: no I/O. Every length read from disk is checked against the bytes that
// remain before it is used, so a corrupt record can only make decode() fail, never overrun.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fs/change_record.h"

namespace sfs::repl {

inline constexpr std::size_t kRecordHeaderSize = 21;               // checksum, length, type, seq
inline constexpr std::uint32_t kMaxPayload = 16u * 1024 * 1024;    // sanity bound on `length`

// Appends one complete record (header + payload) for `record` with sequence `seq` to `out`.
// `epoch` identifies the incarnation of record.ino (docs/journal.md, "Record format").
void encode_record(std::uint64_t seq, const fs::ChangeRecord& record, std::uint64_t epoch, std::string& out);

enum class DecodeStatus {
    Ok,
    Short,        // fewer bytes than the header or the payload needs
    BadLength,    // length > kMaxPayload
    BadChecksum,
    BadType,
    BadPayload,   // checksum fine but the payload does not parse exactly
};
const char* to_string(DecodeStatus status) noexcept;

struct DecodedRecord {
    std::uint64_t seq = 0;
    std::size_t size = 0;  // bytes the whole record occupies
    std::uint64_t epoch = 0;
    fs::ChangeRecord record;
};

// Decodes the record at the start of `bytes`.
DecodeStatus decode_record(std::span<const char> bytes, DecodedRecord& out);

}  // namespace sfs::repl
