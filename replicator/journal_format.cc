#include "replicator/journal_format.h"

#include <xxhash.h>

#include <cstring>

namespace sfs::repl {
namespace {

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
void put_u32(std::string& out, std::uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
    out.append(b, 4);
}
void put_u64(std::string& out, std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
    out.append(b, 8);
}
void put_str(std::string& out, const std::string& s) {
    put_u32(out, static_cast<std::uint32_t>(s.size()));
    out.append(s);
}
void put_time(std::string& out, const timespec& t) {
    put_u64(out, static_cast<std::uint64_t>(t.tv_sec));
    put_u32(out, static_cast<std::uint32_t>(t.tv_nsec));
}

std::uint64_t get_u64_at(const char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}
std::uint32_t get_u32_at(const char* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

// Bounded reader over a payload: every get fails (sets ok=false) instead of overrunning.
struct Reader {
    const char* p;
    std::size_t left;
    bool ok = true;

    bool need(std::size_t n) {
        if (!ok || left < n) ok = false;
        return ok;
    }
    std::uint32_t u32() {
        if (!need(4)) return 0;
        auto v = get_u32_at(p);
        p += 4, left -= 4;
        return v;
    }
    std::uint64_t u64() {
        if (!need(8)) return 0;
        auto v = get_u64_at(p);
        p += 8, left -= 8;
        return v;
    }
    std::string str() {
        std::uint32_t n = u32();
        if (!need(n)) return {};
        std::string s(p, n);
        p += n, left -= n;
        return s;
    }
    timespec time() {
        timespec t{};
        t.tv_sec = static_cast<time_t>(u64());
        t.tv_nsec = static_cast<long>(u32());
        if (t.tv_nsec >= 1000000000L) ok = false;
        return t;
    }
};

}  // namespace

void encode_record(std::uint64_t seq, const fs::ChangeRecord& r, std::uint64_t epoch, std::string& out) {
    const std::size_t start = out.size();
    out.append(8, '\0');  // checksum, filled below
    out.append(4, '\0');  // length, filled below
    put_u8(out, static_cast<std::uint8_t>(static_cast<unsigned>(r.kind) + 1));
    put_u64(out, seq);
    const std::size_t payload_start = out.size();
    put_u64(out, r.ino);
    put_str(out, r.path);
    put_str(out, r.path2);
    put_str(out, r.target);
    put_u32(out, r.flags);
    put_u32(out, r.attr_mask);
    put_u32(out, r.mode);
    put_u32(out, r.uid);
    put_u32(out, r.gid);
    put_u64(out, r.rdev);
    put_u64(out, r.size);
    put_time(out, r.atime);
    put_time(out, r.mtime);
    put_u64(out, r.nlink);
    put_u64(out, r.offset);
    put_u64(out, r.length);
    put_str(out, r.xattr_name);
    put_str(out, r.xattr_value);
    put_u64(out, epoch);
    const auto length = static_cast<std::uint32_t>(out.size() - payload_start);
    for (int i = 0; i < 4; ++i) out[start + 8 + i] = static_cast<char>(length >> (8 * i));
    const std::uint64_t sum = XXH3_64bits(out.data() + start + 8, out.size() - start - 8);
    for (int i = 0; i < 8; ++i) out[start + i] = static_cast<char>(sum >> (8 * i));
}

const char* to_string(DecodeStatus status) noexcept {
    switch (status) {
        case DecodeStatus::Ok: return "ok";
        case DecodeStatus::Short: return "truncated record";
        case DecodeStatus::BadLength: return "implausible length";
        case DecodeStatus::BadChecksum: return "checksum mismatch";
        case DecodeStatus::BadType: return "unknown record type";
        case DecodeStatus::BadPayload: return "malformed payload";
    }
    return "?";
}

DecodeStatus decode_record(std::span<const char> bytes, DecodedRecord& out) {
    if (bytes.size() < kRecordHeaderSize) return DecodeStatus::Short;
    const char* h = bytes.data();
    const std::uint32_t length = get_u32_at(h + 8);
    if (length > kMaxPayload) return DecodeStatus::BadLength;
    if (bytes.size() - kRecordHeaderSize < length) return DecodeStatus::Short;
    const std::uint64_t sum = XXH3_64bits(h + 8, kRecordHeaderSize - 8 + length);
    if (sum != get_u64_at(h)) return DecodeStatus::BadChecksum;
    const unsigned type = static_cast<unsigned char>(h[12]);
    if (type < 1 || type > static_cast<unsigned>(fs::ChangeKind::Verify) + 1) return DecodeStatus::BadType;

    fs::ChangeRecord r;
    r.kind = static_cast<fs::ChangeKind>(type - 1);
    Reader in{h + kRecordHeaderSize, length};
    r.ino = in.u64();
    r.path = in.str();
    r.path2 = in.str();
    r.target = in.str();
    r.flags = in.u32();
    r.attr_mask = in.u32();
    r.mode = static_cast<mode_t>(in.u32());
    r.uid = static_cast<uid_t>(in.u32());
    r.gid = static_cast<gid_t>(in.u32());
    r.rdev = static_cast<dev_t>(in.u64());
    r.size = in.u64();
    r.atime = in.time();
    r.mtime = in.time();
    r.nlink = in.u64();
    r.offset = in.u64();
    r.length = in.u64();
    r.xattr_name = in.str();
    r.xattr_value = in.str();
    const std::uint64_t epoch = in.u64();
    if (!in.ok || in.left != 0) return DecodeStatus::BadPayload;

    out.seq = get_u64_at(h + 13);
    out.size = kRecordHeaderSize + length;
    out.epoch = epoch;
    out.record = std::move(r);
    return DecodeStatus::Ok;
}

}  // namespace sfs::repl
