#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

#include "common/log_file_sink.h"

namespace sfs {

Result<void> init_logging(const LogOptions& options) {
    std::shared_ptr<spdlog::logger> logger;
    try {
        if (!options.file.empty()) {
            auto sink = LogFileSink::open(options.file);
            if (!sink) return std::unexpected(sink.error());
            logger = std::make_shared<spdlog::logger>(options.program, std::move(*sink));
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
