// OutsideChanges::records_for: which journal record each outside change becomes
// (docs/watcher.md, "Integration as built").
#include <gtest/gtest.h>

#include "replicator/outside_changes.h"

namespace sfs::repl {
namespace {

using Kind = watch::OutsideChange::Kind;
using watch::OutsideChange;

std::string describe(const fs::ChangeRecord& r) {
    if (r.kind == fs::ChangeKind::Verify) {
        return std::string("verify ") + r.path + ((r.flags & fs::kVerifySubtree) ? " subtree" : "");
    }
    if (r.kind == fs::ChangeKind::Rename) {
        return "rename " + r.path + " " + r.path2 + ((r.flags & fs::kRenameFromOutside) ? " outside" : "");
    }
    return "other";
}

std::vector<std::string> records(const std::vector<OutsideChange>& batch) {
    std::vector<std::string> out;
    for (const auto& r : OutsideChanges::records_for(batch)) out.push_back(describe(r));
    return out;
}

TEST(WatchRecords, EachKindBecomesItsRecord) {
    EXPECT_EQ(records({{Kind::Modified, "f", {}, false},
                       {Kind::Created, "g", {}, false},
                       {Kind::Attrib, "h", {}, false},
                       {Kind::Deleted, "gone", {}, true},
                       {Kind::Renamed, "a", "b/c", true},
                       {Kind::DirCreated, "n", {}, true},
                       {Kind::Overflow, "sub", {}, true}}),
              (std::vector<std::string>{"verify f", "verify g", "verify h", "verify gone subtree",
                                        "rename a b/c outside", "verify n subtree", "verify sub subtree"}));
}

TEST(WatchRecords, ChangesInsideASubtreeOfTheBatchAreCoveredUntilARename) {
    EXPECT_EQ(records({{Kind::DirCreated, "n", {}, true},
                       {Kind::Created, "n/f", {}, false},
                       {Kind::DirCreated, "n/a", {}, true},
                       {Kind::Created, "nx", {}, false},  // a sibling with a common prefix
                       {Kind::Renamed, "n", "m", true},
                       {Kind::Created, "n/again", {}, false}}),
              (std::vector<std::string>{"verify n subtree", "verify nx", "rename n m outside", "verify n/again"}));
    EXPECT_EQ(records({{Kind::Overflow, "", {}, true}, {Kind::Modified, "x/y", {}, false}}),
              (std::vector<std::string>{"verify  subtree"}));
}

}  // namespace
}  // namespace sfs::repl
