// gtest main for the fs tests: the process umask is 0 like the syncfs daemon's, so modes
// are compared as given and both the native and the mounted side see the same masking.
#include <gtest/gtest.h>
#include <sys/stat.h>

int main(int argc, char** argv) {
    ::umask(0);
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
