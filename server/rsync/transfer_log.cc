#include "server/rsync/transfer_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>

#include <spdlog/spdlog.h>

#include "server/rsync/session.h"

namespace sfs::server::rsync {

namespace {

constexpr std::size_t kMaxLine = 4096;

std::string clean(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
    return out;
}

char type_letter(mode_t m) {
    if (S_ISDIR(m)) return 'd';
    if (S_ISLNK(m)) return 'L';
    if (S_ISCHR(m) || S_ISBLK(m)) return 'D';
    if (S_ISREG(m)) return 'f';
    return 'S';
}

}  // namespace

std::string format_transfer_log(const std::string& format, const ModuleAccess& module, const TransferLogItem& item) {
    const protocol::FileEntry* e = item.entry;
    const mode_t mode = e ? static_cast<mode_t>(e->mode) : S_IFREG;
    std::string out;
    for (std::size_t i = 0; i < format.size() && out.size() < kMaxLine; ++i) {
        char c = format[i];
        if (c != '%' || i + 1 == format.size()) {
            out.push_back(c);
            continue;
        }
        // rsync allows a width ("%-10n", "%'l"); it is skipped here.
        std::size_t j = i + 1;
        while (j < format.size() && (format[j] == '-' || format[j] == '\'' || (format[j] >= '0' && format[j] <= '9'))) ++j;
        if (j == format.size()) {
            out.append(format, i, std::string::npos);
            break;
        }
        i = j;
        switch (format[j]) {
        case '%': out.push_back('%'); break;
        case 'o': out += item.sent ? "send" : "recv"; break;
        case 'h': out += clean(module.peer_host); break;
        case 'a': out += clean(module.peer_addr); break;
        case 'm': out += clean(module.name); break;
        case 'u': out += clean(module.user); break;
        case 'P': out += clean(module.path); break;
        case 'p': out += std::to_string(::getpid()); break;
        case 'f': out += clean(item.module_path); break;
        case 'n': out += clean(item.name) + (S_ISDIR(mode) ? "/" : ""); break;
        case 'L':
            if (e && S_ISLNK(mode)) out += " -> " + clean(e->link_target);
            break;
        case 'l': out += std::to_string(e ? e->size : 0); break;
        case 'b':
        case 'c': out += std::to_string(item.bytes); break;
        case 'i': {
            out.push_back(item.sent ? '<' : '>');
            out.push_back(type_letter(mode));
            out += "?????????";
            break;
        }
        case 't': {
            std::time_t now = std::time(nullptr);
            std::tm tm{};
            ::localtime_r(&now, &tm);
            char buf[32];
            std::strftime(buf, sizeof buf, "%Y/%m/%d %H:%M:%S", &tm);
            out += buf;
            break;
        }
        case 'M': {
            std::time_t t = e ? static_cast<std::time_t>(e->mtime) : 0;
            std::tm tm{};
            ::localtime_r(&t, &tm);
            char buf[32];
            std::strftime(buf, sizeof buf, "%Y/%m/%d-%H:%M:%S", &tm);
            out += buf;
            break;
        }
        case 'B': {
            static const char rwx[] = "rwxrwxrwx";
            for (int b = 0; b < 9; ++b) out.push_back(mode & (1 << (8 - b)) ? rwx[b] : '-');
            break;
        }
        case 'U': out += std::to_string(e ? e->uid : 0); break;
        case 'G': out += std::to_string(e ? e->gid : 0); break;
        default: out.push_back('%'); out.push_back(format[j]); break;
        }
    }
    if (out.size() > kMaxLine) out.resize(kMaxLine);
    return out;
}

void log_transfer(const ModuleAccess& module, const TransferLogItem& item) {
    if (!module.transfer_logging) return;
    std::string fmt = module.log_format.empty() ? std::string("%o %h [%a] %m (%u) %f %l") : module.log_format;
    spdlog::info("{}", format_transfer_log(fmt, module, item));
}

}  // namespace sfs::server::rsync
