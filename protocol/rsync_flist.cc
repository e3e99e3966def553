#include "protocol/rsync_flist.h"

#include <sys/stat.h>

#include <algorithm>

namespace sfs::protocol {

bool is_device(std::uint32_t mode) { return S_ISCHR(mode) || S_ISBLK(mode); }
bool is_special(std::uint32_t mode) { return S_ISFIFO(mode) || S_ISSOCK(mode); }

void FlistEncoder::encode(const FileEntry& e, std::string& out) {
    std::uint32_t x = 0;
    if (S_ISDIR(e.mode) && e.top_dir) x |= kXmitTopDir;
    if (e.mode == mode_) x |= kXmitSameMode;
    else mode_ = e.mode;
    bool has_rdev = (opt_.preserve_devices && is_device(e.mode)) ||
                    (opt_.preserve_specials && is_special(e.mode));
    std::uint32_t rdev = is_device(e.mode) ? e.rdev : 0;
    if (has_rdev) {
        if (have_rdev_ && rdev == rdev_) x |= kXmitSameRdevPre28;
        else rdev_ = rdev;
        have_rdev_ = true;
    } else {
        rdev_ = 0;   // protocol < 28: rdev = MAKEDEV(0, 0) for everything else
        have_rdev_ = true;
    }
    if (!opt_.preserve_uid || (e.uid == uid_ && !lastname_.empty())) x |= kXmitSameUid;
    else uid_ = e.uid;
    if (!opt_.preserve_gid || (e.gid == gid_ && !lastname_.empty())) x |= kXmitSameGid;
    else gid_ = e.gid;
    if (e.mtime == mtime_) x |= kXmitSameTime;
    else mtime_ = e.mtime;

    std::size_t l1 = 0;
    while (l1 < lastname_.size() && l1 < e.name.size() && l1 < 255 && e.name[l1] == lastname_[l1]) ++l1;
    std::size_t l2 = e.name.size() - l1;
    if (l1 > 0) x |= kXmitSameName;
    if (l2 > 255) x |= kXmitLongName;
    if ((x & 0xFF) == 0) x |= S_ISDIR(e.mode) ? kXmitLongName : kXmitTopDir;

    put_u8(out, static_cast<std::uint8_t>(x));
    if (x & kXmitSameName) put_u8(out, static_cast<std::uint8_t>(l1));
    if (x & kXmitLongName) put_i32(out, static_cast<std::int32_t>(l2));
    else put_u8(out, static_cast<std::uint8_t>(l2));
    out.append(e.name, l1, l2);

    put_longint(out, e.size);
    if (!(x & kXmitSameTime)) put_i32(out, static_cast<std::int32_t>(e.mtime));
    if (!(x & kXmitSameMode)) put_i32(out, static_cast<std::int32_t>(e.mode));
    if (opt_.preserve_atimes && !S_ISDIR(e.mode)) put_varlong(out, e.atime, 4);
    if (opt_.preserve_uid && !(x & kXmitSameUid)) put_i32(out, static_cast<std::int32_t>(e.uid));
    if (opt_.preserve_gid && !(x & kXmitSameGid)) put_i32(out, static_cast<std::int32_t>(e.gid));
    if (has_rdev && !(x & kXmitSameRdevPre28)) put_i32(out, static_cast<std::int32_t>(rdev));
    if (opt_.preserve_links && S_ISLNK(e.mode)) {
        put_i32(out, static_cast<std::int32_t>(e.link_target.size()));
        out += e.link_target;
    }
    if (opt_.preserve_hard_links && S_ISREG(e.mode)) {
        put_longint(out, e.dev + 1);
        put_longint(out, e.ino);
    }
    if (opt_.always_checksum) {
        if (S_ISREG(e.mode)) out.append(reinterpret_cast<const char*>(e.sum.data()), e.sum.size());
        else out.append(kSumLength, '\0');
    }
    lastname_ = e.name;
}

Result<std::string> sanitize_wire_name(std::string_view name) {
    if (name.empty()) return fail("protocol error: empty file name from client");
    if (name.front() == '/') return fail("ABORTING due to unsafe pathname from sender: " + std::string(name));
    std::string out;
    std::size_t i = 0;
    while (i < name.size()) {
        std::size_t j = name.find('/', i);
        if (j == std::string_view::npos) j = name.size();
        std::string_view comp = name.substr(i, j - i);
        i = j + 1;
        if (comp.empty() || comp == ".") continue;
        if (comp == "..") return fail("ABORTING due to unsafe pathname from sender: " + std::string(name));
        if (comp.find('\0') != std::string_view::npos)
            return fail("protocol error: NUL byte in file name from client");
        if (!out.empty()) out += '/';
        out += comp;
    }
    if (out.empty()) out = ".";
    return out;
}

Result<std::optional<FileEntry>> FlistDecoder::decode(WireReader& in) {
    auto fl = in.read_u8();
    if (!fl) return std::unexpected(fl.error());
    std::uint32_t x = *fl;
    if (x == 0) return std::optional<FileEntry>{};
    FileEntry e;
    std::size_t l1 = 0;
    if (x & kXmitSameName) {
        auto v = in.read_u8();
        if (!v) return std::unexpected(v.error());
        l1 = *v;
    }
    std::int64_t l2;
    if (x & kXmitLongName) {
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        l2 = *v;
    } else {
        auto v = in.read_u8();
        if (!v) return std::unexpected(v.error());
        l2 = *v;
    }
    if (l1 > lastname_.size())
        return fail("protocol error: file-list name shares " + std::to_string(l1) +
                    " bytes with a previous name of " + std::to_string(lastname_.size()));
    auto suffix = in.read_bytes(l2, kMaxPathLen - l1, "file-list name");
    if (!suffix) return std::unexpected(suffix.error());
    std::string raw = lastname_.substr(0, l1) + *suffix;
    lastname_ = raw;
    auto clean = sanitize_wire_name(raw);
    if (!clean) return std::unexpected(clean.error());
    e.name = *clean;

    auto size = in.read_longint();
    if (!size) return std::unexpected(size.error());
    if (*size < 0) return fail("protocol error: negative file length for " + e.name);
    e.size = *size;
    if (!(x & kXmitSameTime)) {
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        mtime_ = static_cast<std::uint32_t>(*v);   // read_uint below protocol 30
    }
    e.mtime = mtime_;
    if (!(x & kXmitSameMode)) {
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        mode_ = static_cast<std::uint32_t>(*v);
        std::uint32_t m = mode_;
        if (!S_ISREG(m) && !S_ISDIR(m) && !S_ISLNK(m) && !S_ISCHR(m) && !S_ISBLK(m) &&
            !S_ISFIFO(m) && !S_ISSOCK(m) && !(m == 0 && opt_.allow_missing))
            return fail("protocol error: invalid file mode 0" + std::to_string(m) + " for " + e.name);
    }
    e.mode = mode_;
    if (opt_.preserve_atimes && !S_ISDIR(e.mode)) {
        auto v = in.read_varlong(4);
        if (!v) return std::unexpected(v.error());
        e.atime = *v;
    }
    if (opt_.preserve_uid && !(x & kXmitSameUid)) {
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        uid_ = static_cast<std::uint32_t>(*v);
    }
    if (opt_.preserve_gid && !(x & kXmitSameGid)) {
        auto v = in.read_i32();
        if (!v) return std::unexpected(v.error());
        gid_ = static_cast<std::uint32_t>(*v);
    }
    e.uid = uid_;
    e.gid = gid_;
    if ((opt_.preserve_devices && is_device(e.mode)) || (opt_.preserve_specials && is_special(e.mode))) {
        if (!(x & kXmitSameRdevPre28)) {
            auto v = in.read_i32();
            if (!v) return std::unexpected(v.error());
            rdev_ = static_cast<std::uint32_t>(*v);
        }
        e.size = 0;
    } else {
        rdev_ = 0;
    }
    e.rdev = rdev_;
    if (opt_.preserve_links && S_ISLNK(e.mode)) {
        auto len = in.read_i32();
        if (!len) return std::unexpected(len.error());
        auto t = in.read_bytes(*len, kMaxPathLen, "symlink target");
        if (!t) return std::unexpected(t.error());
        if (t->find('\0') != std::string::npos) return fail("protocol error: NUL in symlink target of " + e.name);
        e.link_target = std::move(*t);
    }
    if (opt_.preserve_hard_links && S_ISREG(e.mode)) {
        auto d = in.read_longint();
        if (!d) return std::unexpected(d.error());
        auto i = in.read_longint();
        if (!i) return std::unexpected(i.error());
        e.dev = *d - 1;
        e.ino = *i;
    }
    if (opt_.always_checksum) {
        if (auto r = in.read_exact(e.sum.data(), e.sum.size()); !r) return std::unexpected(r.error());
    }
    if (S_ISDIR(e.mode) && (x & kXmitTopDir)) e.top_dir = true;
    if (e.name == "." && !S_ISDIR(e.mode))
        return fail("protocol error: rejecting non-directory transfer-root entry");
    return std::optional<FileEntry>(std::move(e));
}

void encode_id_list(const IdNames& ids, std::string& out) {
    for (const auto& [id, name] : ids) {
        if (id == 0 || name.empty()) continue;
        std::size_t len = std::min<std::size_t>(name.size(), 255);
        put_i32(out, static_cast<std::int32_t>(id));
        put_u8(out, static_cast<std::uint8_t>(len));
        out.append(name, 0, len);
    }
    put_i32(out, 0);
}

Result<IdNames> decode_id_list(WireReader& in) {
    IdNames ids;
    for (;;) {
        auto id = in.read_i32();
        if (!id) return std::unexpected(id.error());
        if (*id == 0) break;
        auto len = in.read_u8();
        if (!len) return std::unexpected(len.error());
        auto name = in.read_bytes(*len, 255, "user/group name");
        if (!name) return std::unexpected(name.error());
        if (ids.size() > 1'000'000) return fail("protocol error: too many user/group names");
        ids[static_cast<std::uint32_t>(*id)] = std::move(*name);
    }
    return ids;
}

void sort_file_list(std::vector<FileEntry>& list) {
    std::stable_sort(list.begin(), list.end(), [](const FileEntry& a, const FileEntry& b) {
        return std::lexicographical_compare(
            a.name.begin(), a.name.end(), b.name.begin(), b.name.end(),
            [](char x, char y) { return static_cast<unsigned char>(x) < static_cast<unsigned char>(y); });
    });
}

void clean_file_list(std::vector<FileEntry>& list) {
    std::size_t prev = 0;
    bool have_prev = false;
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (!list[i].active) continue;
        if (have_prev && list[i].name == list[prev].name) {
            // Keep the directory if one of the two is one, else the first.
            if (S_ISDIR(list[i].mode) && !S_ISDIR(list[prev].mode)) {
                list[prev].active = false;
                prev = i;
            } else {
                if (S_ISDIR(list[i].mode)) list[prev].top_dir = list[prev].top_dir || list[i].top_dir;
                list[i].active = false;
            }
            continue;
        }
        prev = i;
        have_prev = true;
    }
}

}  // namespace sfs::protocol
