#!/usr/bin/python3
"""Loopback TCP proxy that counts the bytes a replication tool puts on the wire.

Every tool under test (the inotify+rsync script, lsyncd, syncfs) connects to this proxy instead
of its daemon, so "bytes on the wire" is measured the same way for all of them: payload bytes
in both directions, excluding TCP/IP headers.

Contract:
  wireproxy.py --listen PORT --control SOCKET_PATH
  The control socket (unix stream) takes one line per request and answers one line:
    "target PORT"  -> "ok"            forward new connections to 127.0.0.1:PORT
    "stats"        -> "UP DOWN CONNS" bytes client->daemon, daemon->client, connections so far
  Connections accepted while no target is set are closed at once.
"""
import argparse
import asyncio
import os
import sys

CHUNK = 256 * 1024


class Counters:
    def __init__(self):
        self.up = 0
        self.down = 0
        self.conns = 0
        self.target = None


async def pump(reader, writer, counters, upstream):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if upstream:
                counters.up += len(data)
            else:
                counters.down += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def handle_client(creader, cwriter, counters):
    if counters.target is None:
        cwriter.close()
        return
    try:
        sreader, swriter = await asyncio.open_connection("127.0.0.1", counters.target)
    except OSError:
        cwriter.close()
        return
    counters.conns += 1
    await asyncio.gather(pump(creader, swriter, counters, True),
                         pump(sreader, cwriter, counters, False))
    for w in (swriter, cwriter):
        try:
            w.close()
        except (ConnectionError, OSError):
            pass


async def handle_control(reader, writer, counters):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            words = line.decode("ascii", "replace").split()
            if words[:1] == ["stats"]:
                reply = f"{counters.up} {counters.down} {counters.conns}"
            elif len(words) == 2 and words[0] == "target" and words[1].isdigit():
                counters.target = int(words[1])
                reply = "ok"
            else:
                reply = "error: expected 'stats' or 'target PORT'"
            writer.write((reply + "\n").encode())
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--control", required=True)
    args = ap.parse_args()
    counters = Counters()
    server = await asyncio.start_server(lambda r, w: handle_client(r, w, counters),
                                        "127.0.0.1", args.listen, reuse_address=True)
    if os.path.exists(args.control):
        os.unlink(args.control)
    control = await asyncio.start_unix_server(lambda r, w: handle_control(r, w, counters),
                                              args.control)
    print("ready", flush=True)
    async with server, control:
        await asyncio.gather(server.serve_forever(), control.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
