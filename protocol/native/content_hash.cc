#include "protocol/native/content_hash.h"

#include <xxhash.h>

#include <cstring>
#include <new>

namespace sfs::protocol::native {

ContentHasher::ContentHasher() : state_(XXH3_createState()) {
    if (state_ == nullptr) throw std::bad_alloc();
    XXH3_128bits_reset(state_);
}

ContentHasher::~ContentHasher() { XXH3_freeState(state_); }

void ContentHasher::update(const void* data, std::size_t size) noexcept { XXH3_128bits_update(state_, data, size); }

Hash128 ContentHasher::digest() const noexcept {
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(state_));
    Hash128 h;
    std::memcpy(h.data(), canon.digest, h.size());
    return h;
}

Hash128 ContentHasher::of(std::string_view data) noexcept {
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(data.data(), data.size()));
    Hash128 h;
    std::memcpy(h.data(), canon.digest, h.size());
    return h;
}

}  // namespace sfs::protocol::native
