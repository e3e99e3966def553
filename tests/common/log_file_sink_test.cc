#include "common/log_file_sink.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace sfs {
namespace {

namespace fs = std::filesystem;

using testsupport::TempDir;

std::string read_file(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

spdlog::logger make_logger(const fs::path& file) {
    auto sink = LogFileSink::open(file, std::chrono::milliseconds(0));
    EXPECT_TRUE(sink.has_value()) << sink.error().message;
    spdlog::logger logger("test", std::move(*sink));
    logger.set_pattern("%v");
    return logger;
}

// logrotate's default (create): the file is renamed and a new one expected at the path.
TEST(LogFileSink, RotatedByRenameTheNextLineGoesToANewFile) {
    TempDir d;
    auto logger = make_logger(d / "syncfsd.log");
    logger.info("before rotation");
    fs::rename(d / "syncfsd.log", d / "syncfsd.log.1");
    logger.info("after rotation");
    EXPECT_EQ(read_file(d / "syncfsd.log.1"), "before rotation\n");
    EXPECT_EQ(read_file(d / "syncfsd.log"), "after rotation\n");
}

// `rotate 0` or an operator's rm: writing on to the unlinked inode would lose every line.
TEST(LogFileSink, DeletedFileIsCreatedAgain) {
    TempDir d;
    auto logger = make_logger(d / "l");
    logger.info("one");
    fs::remove(d / "l");
    logger.info("two");
    EXPECT_EQ(read_file(d / "l"), "two\n");
}

// copytruncate: the same inode, emptied; O_APPEND writes go on at its new end.
TEST(LogFileSink, TruncatedInPlaceContinuesAtTheStart) {
    TempDir d;
    auto logger = make_logger(d / "l");
    logger.info("one");
    ASSERT_EQ(::truncate((d / "l").c_str(), 0), 0);
    logger.info("two");
    EXPECT_EQ(read_file(d / "l"), "two\n");
}

// The check runs at most once per interval: between checks lines go to the open file.
TEST(LogFileSink, ChecksThePathAtMostOncePerInterval) {
    TempDir d;
    auto sink = LogFileSink::open(d / "l", std::chrono::hours(1));
    ASSERT_TRUE(sink.has_value());
    spdlog::logger logger("test", std::move(*sink));
    logger.set_pattern("%v");
    fs::rename(d / "l", d / "l.1");
    logger.info("still old");
    EXPECT_EQ(read_file(d / "l.1"), "still old\n");
    EXPECT_FALSE(fs::exists(d / "l"));
}

TEST(LogFileSink, UnopenableFileIsAnErrorNamingIt) {
    TempDir d;
    auto sink = LogFileSink::open(d / "no-such-dir" / "l");
    ASSERT_FALSE(sink.has_value());
    EXPECT_NE(sink.error().message.find("no-such-dir/l: cannot open log file"), std::string::npos)
        << sink.error().message;
}

// When the directory went away the sink keeps the file it has rather than dropping lines.
TEST(LogFileSink, ReopenFailureKeepsWritingToTheOpenFile) {
    TempDir d;
    fs::create_directory(d / "logs");
    auto logger = make_logger(d / "logs" / "l");
    logger.info("one");
    fs::rename(d / "logs", d / "moved");
    logger.info("two");
    EXPECT_EQ(read_file(d / "moved" / "l"), "one\ntwo\n");
}

}  // namespace
}  // namespace sfs
