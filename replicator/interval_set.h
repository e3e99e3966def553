// A set of byte ranges [start, end) with merging: the dirty ranges of one file.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace sfs::repl {

struct ByteRange {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
    bool operator==(const ByteRange&) const = default;
};

class IntervalSet {
public:
    // Adds [offset, offset+length); overlapping and adjacent ranges merge.
    void add(std::uint64_t offset, std::uint64_t length);
    void add(const std::vector<ByteRange>& ranges) {
        for (const auto& r : ranges) add(r.offset, r.length);
    }
    bool empty() const noexcept { return ranges_.empty(); }
    std::size_t count() const noexcept { return ranges_.size(); }
    std::uint64_t bytes() const noexcept;
    std::vector<ByteRange> ranges() const;
    // Returns every range and empties the set.
    std::vector<ByteRange> take();

private:
    std::map<std::uint64_t, std::uint64_t> ranges_;  // start -> end, disjoint, not adjacent
};

}  // namespace sfs::repl
