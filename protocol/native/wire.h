// Little-endian wire primitives for the native protocol: a bounds-checked Reader over one
// frame payload and an appending Writer. Every Reader call checks the remaining bytes and the
// field's cap before touching memory; the first failure sticks (later reads fail too) so a
// decoder can read all fields and check ok() once.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sfs::protocol::native {

class Writer {
public:
    explicit Writer(std::vector<std::uint8_t>& out) : out_(out) {}
    void u8(std::uint8_t v) { out_.push_back(v); }
    void u16(std::uint16_t v) { put(v, 2); }
    void u32(std::uint32_t v) { put(v, 4); }
    void u64(std::uint64_t v) { put(v, 8); }
    void i32(std::int32_t v) { put(static_cast<std::uint32_t>(v), 4); }
    void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
    void bytes(std::span<const std::uint8_t> b) {
        u32(static_cast<std::uint32_t>(b.size()));
        out_.insert(out_.end(), b.begin(), b.end());
    }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out_.insert(out_.end(), s.begin(), s.end());
    }
    void raw(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }

private:
    void put(std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    }
    std::vector<std::uint8_t>& out_;
};

class Reader {
public:
    explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}

    std::uint8_t u8() { return static_cast<std::uint8_t>(get(1, "u8")); }
    std::uint16_t u16() { return static_cast<std::uint16_t>(get(2, "u16")); }
    std::uint32_t u32() { return static_cast<std::uint32_t>(get(4, "u32")); }
    std::uint64_t u64() { return get(8, "u64"); }
    std::int32_t i32() { return static_cast<std::int32_t>(static_cast<std::uint32_t>(get(4, "i32"))); }
    std::int64_t i64() { return static_cast<std::int64_t>(get(8, "i64")); }

    // A u32-length-prefixed string of at most `cap` bytes.
    std::string str(std::uint32_t cap, const char* field) {
        std::span<const std::uint8_t> b = blob(cap, field);
        return std::string(reinterpret_cast<const char*>(b.data()), b.size());
    }
    std::vector<std::uint8_t> bytes(std::uint32_t cap, const char* field) {
        std::span<const std::uint8_t> b = blob(cap, field);
        return std::vector<std::uint8_t>(b.begin(), b.end());
    }
    // Exactly n raw bytes into out.
    void raw(std::uint8_t* out, std::size_t n, const char* field) {
        if (!ok_) return;
        if (in_.size() - pos_ < n) return set_error(std::string("truncated ") + field);
        std::memcpy(out, in_.data() + pos_, n);
        pos_ += n;
    }

    void set_error(std::string reason) {
        if (ok_) {
            ok_ = false;
            error_ = std::move(reason);
        }
    }
    bool ok() const noexcept { return ok_; }
    bool at_end() const noexcept { return pos_ == in_.size(); }
    std::size_t remaining() const noexcept { return in_.size() - pos_; }
    const std::string& error() const noexcept { return error_; }

private:
    std::uint64_t get(std::size_t n, const char* what) {
        if (!ok_) return 0;
        if (in_.size() - pos_ < n) {
            set_error(std::string("truncated ") + what);
            return 0;
        }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{in_[pos_ + i]} << (8 * i);
        pos_ += n;
        return v;
    }
    std::span<const std::uint8_t> blob(std::uint32_t cap, const char* field) {
        std::uint32_t len = u32();
        if (!ok_) return {};
        if (len > cap) {
            set_error(std::string(field) + " length " + std::to_string(len) + " exceeds cap " +
                      std::to_string(cap));
            return {};
        }
        if (in_.size() - pos_ < len) {
            set_error(std::string("truncated ") + field);
            return {};
        }
        std::span<const std::uint8_t> b = in_.subspan(pos_, len);
        pos_ += len;
        return b;
    }

    std::span<const std::uint8_t> in_;
    std::size_t pos_ = 0;
    bool ok_ = true;
    std::string error_;
};

}  // namespace sfs::protocol::native
