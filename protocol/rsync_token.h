// The token stream of one file's data (token.c).
//
// Plain: int32 n > 0 then n literal bytes; int32 -(i+1) copies basis block i; 0 ends.
// Deflated (-z below protocol 30, rsync's CPRES_ZLIB): flag bytes END_FLAG (0),
// TOKEN_LONG (0x20) + int32 index, TOKENRUN_LONG (0x21) + int32 + 16-bit run,
// DEFLATED_DATA (0x40 | len>>8) + len&0xff + raw-deflate bytes (<= 16383),
// TOKEN_REL (0x80 | delta) and TOKENRUN_REL (0xc0 | delta) + 16-bit run. Literal data is
// one raw deflate stream per file, sync-flushed before each token with the trailing
// 00 00 ff ff removed (the receiver re-inserts it). Each matched block's bytes enter both
// sides' compression history without being sent: the sender pushes them through its
// deflater and discards the output (what rsync does with a system zlib), the receiver
// inflates a fake stored block holding them (see_deflate_token). Below protocol 31 both
// sides feed the first 64 KiB again for every 64 KiB piece of a longer block (rsync's
// "data-duplicating bug"); we reproduce it.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "protocol/rsync_wire.h"

namespace sfs::protocol {

inline constexpr std::int32_t kChunkSize = 32 * 1024;
inline constexpr std::int32_t kMaxDataCount = 16383;

class TokenWriter {
public:
    TokenWriter(WireWriter& out, bool compress, int level, int protocol);
    ~TokenWriter();
    TokenWriter(const TokenWriter&) = delete;
    TokenWriter& operator=(const TokenWriter&) = delete;

    // send_token(): `n` literal bytes, then `token`: >= 0 a matched basis block whose bytes
    // are `block`/`blen` (the sender's copy), -1 end of file, -2 literal only.
    Result<void> send(std::int32_t token, const std::uint8_t* lit, std::size_t n,
                      const std::uint8_t* block, std::size_t blen);
    // rsync's CPRES_ZLIBX (`-zz`, sent as --new-compress): matched blocks do not enter the
    // compression history. Set before the first send().
    void set_block_history(bool on) { history_ = on; }

private:
    Result<void> send_plain(std::int32_t token, const std::uint8_t* lit, std::size_t n);
    Result<void> send_deflated(std::int32_t token, const std::uint8_t* lit, std::size_t n,
                               const std::uint8_t* block, std::size_t blen);
    Result<void> emit_data(std::string& z, bool final);

    WireWriter& out_;
    bool compress_;
    bool history_ = true;
    int level_;
    int protocol_;
    z_stream tx_{};
    bool init_done_ = false;
    bool flush_pending_ = false;
    std::int32_t last_token_ = -1;
    std::int32_t run_start_ = 0;
    std::int32_t last_run_end_ = 0;
};

struct Token {
    enum Kind { literal, block, end } kind = end;
    std::string_view data;     // literal: valid until the next call
    std::int32_t index = 0;    // block
};

class TokenReader {
public:
    TokenReader(WireReader& in, bool compress, int protocol);
    ~TokenReader();
    TokenReader(const TokenReader&) = delete;
    TokenReader& operator=(const TokenReader&) = delete;

    // recv_token(). Block indices are not range-checked here (the caller knows the count).
    Result<Token> next();
    // see_token(): after a block token, the basis bytes of that block.
    Result<void> see_block(const std::uint8_t* data, std::size_t len);
    // CPRES_ZLIBX: see_block() does nothing (the sender did not add blocks to its history).
    void set_block_history(bool on) { history_ = on; }

private:
    Result<Token> next_plain();
    Result<Token> next_deflated();
    Result<Token> token_num(std::uint32_t flag);

    WireReader& in_;
    bool compress_;
    bool history_ = true;
    int protocol_;
    // plain
    std::int32_t residue_ = 0;
    std::string buf_;
    // deflate
    enum State { r_init, r_idle, r_running, r_inflating, r_inflated } state_ = r_init;
    z_stream rx_{};
    bool init_done_ = false;
    std::string cbuf_, dbuf_;
    std::uint32_t saved_flag_ = 0;
    std::int32_t rx_token_ = 0;
    std::int32_t rx_run_ = 0;
};

}  // namespace sfs::protocol
