// XXH3-128 digests in the byte order the native protocol carries them (canonical, big-endian,
// as XXH128_canonicalFromHash): ContentCommit hashes, listing content digests, xattr digests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "protocol/native/messages.h"

struct XXH3_state_s;

namespace sfs::protocol::native {

// Streaming hasher; one per content. Not copyable (owns the XXH3 state).
class ContentHasher {
public:
    ContentHasher();
    ~ContentHasher();
    ContentHasher(const ContentHasher&) = delete;
    ContentHasher& operator=(const ContentHasher&) = delete;

    void update(const void* data, std::size_t size) noexcept;
    void update(std::span<const std::uint8_t> data) noexcept { update(data.data(), data.size()); }
    void update(std::string_view data) noexcept { update(data.data(), data.size()); }
    Hash128 digest() const noexcept;  // of everything so far; update() may continue

    static Hash128 of(std::string_view data) noexcept;

private:
    XXH3_state_s* state_;
};

}  // namespace sfs::protocol::native
