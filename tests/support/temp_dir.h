// A directory under /tmp for one test, removed with everything in it at the end.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace sfs::testsupport {

struct TempDir {
    std::string path;
    explicit TempDir(const std::string& prefix = "syncfs-test") {
        std::string tmpl = "/tmp/" + prefix + ".XXXXXX";
        path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path operator/(const std::string& name) const { return std::filesystem::path(path) / name; }
};

}  // namespace sfs::testsupport
