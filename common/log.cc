#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

namespace sfs {

Result<void> init_logging(const LogOptions& options) {
    std::shared_ptr<spdlog::logger> logger;
    try {
        if (!options.file.empty()) {
            logger = spdlog::basic_logger_mt(options.program, options.file);
        } else if (options.use_syslog) {
            logger = spdlog::syslog_logger_mt(options.program, options.program, LOG_PID, LOG_DAEMON);
        } else {
            logger = spdlog::stderr_logger_mt(options.program);
        }
    } catch (const spdlog::spdlog_ex& e) {
        return fail(options.file + ": cannot open log file: " + e.what());
    }
    logger->set_level(options.debug ? spdlog::level::debug : spdlog::level::info);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
    return {};
}

}  // namespace sfs
