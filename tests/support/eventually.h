// Waiting for something a daemon or a watcher thread does asynchronously.
#pragma once

#include <chrono>
#include <thread>

namespace sfs::testsupport {

// Polls `done` every `step` until it holds or `timeout` passes; returns its last value.
// Timeouts are generous on purpose: a loaded 2-core CI machine can take seconds for what
// takes milliseconds here, and a passing wait costs only as long as the thing it waits for.
template <typename Pred>
bool eventually(Pred done, std::chrono::milliseconds timeout = std::chrono::seconds(30),
                std::chrono::milliseconds step = std::chrono::milliseconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) return done();
        std::this_thread::sleep_for(step);
    }
    return true;
}

}  // namespace sfs::testsupport
