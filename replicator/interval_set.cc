#include "replicator/interval_set.h"

#include <algorithm>
#include <limits>

namespace sfs::repl {

void IntervalSet::add(std::uint64_t offset, std::uint64_t length) {
    if (length == 0) return;
    std::uint64_t start = offset;
    std::uint64_t end = length > std::numeric_limits<std::uint64_t>::max() - offset
                            ? std::numeric_limits<std::uint64_t>::max()
                            : offset + length;
    // First range that could touch [start, end): the one starting at or before start.
    auto it = ranges_.upper_bound(start);
    if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second >= start) it = prev;
    }
    while (it != ranges_.end() && it->first <= end) {
        start = std::min(start, it->first);
        end = std::max(end, it->second);
        it = ranges_.erase(it);
    }
    ranges_.emplace(start, end);
}

std::uint64_t IntervalSet::bytes() const noexcept {
    std::uint64_t total = 0;
    for (const auto& [s, e] : ranges_) total += e - s;
    return total;
}

std::vector<ByteRange> IntervalSet::ranges() const {
    std::vector<ByteRange> out;
    out.reserve(ranges_.size());
    for (const auto& [s, e] : ranges_) out.push_back({s, e - s});
    return out;
}

std::vector<ByteRange> IntervalSet::take() {
    auto out = ranges();
    ranges_.clear();
    return out;
}

}  // namespace sfs::repl
