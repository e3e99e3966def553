#!/usr/bin/env python3
"""FUSE requests per operation of the bench/fs workloads, counted from syncfs's -d log.

    bench/fs/count_requests.py SYNCFS_BINARY [--files N] [--base DIR] [-o OPTIONS]

Mounts a fresh SOURCE with `-f -d`, runs each workload on N files (default 200) with a
statfs(2) before and after it (STATFS is a marker: no workload sends one), and prints the
opcodes the kernel sent in between, per workload op. Load-independent, unlike times: the
figure to compare before/after a change. Needs root.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsbench import small_files  # noqa: E402  (the same loops as bench/fs/run)

KiB = 1024
MiB = 1 << 20


def workloads(mnt, n):
    _d, create, stat_all, rename_all, unlink_all = small_files(mnt, n)
    data = b"s" * 4096

    big = os.path.join(mnt, "big")

    def write_small_chunks():
        # one file, n write(2) calls of 4 KiB: what a logger or a compiler does
        fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for _ in range(n):
            os.write(fd, data)
        os.close(fd)

    def write_1mib():
        fd = os.open(big, os.O_WRONLY | os.O_TRUNC)
        chunk = b"\xa5" * MiB
        for _ in range(16):
            os.write(fd, chunk)
        os.fsync(fd)
        os.close(fd)

    def warm_read():
        for _ in range(2):
            fd = os.open(big, os.O_RDONLY)
            while os.read(fd, MiB):
                pass
            os.close(fd)

    # (name, function, how many ops it performs)
    return [
        ("create (open O_CREAT, write 4 KiB, close)", create, n),
        ("first stat after create", stat_all, n),
        ("warm stat (second pass)", stat_all, n),
        ("rename", rename_all, n),
        ("unlink", unlink_all, n),
        ("write(2) of 4 KiB to one open file", write_small_chunks, n),
        ("write(2) of 1 MiB (16 + fsync)", write_1mib, 16),
        ("read 16 MiB twice (second warm)", warm_read, 1),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("syncfs")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--base", default="/var/tmp")
    ap.add_argument("-o", dest="options", default="")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="syncfs-count-", dir=args.base)
    src, mnt = os.path.join(work, "src"), os.path.join(work, "mnt")
    os.mkdir(src)
    os.mkdir(mnt)
    log_path = os.path.join(work, "log")
    cmd = [args.syncfs, src, mnt, "-f", "-d"] + (["-o", args.options] if args.options else [])
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if os.path.ismount(mnt):
                break
            time.sleep(0.05)
        else:
            sys.exit("mount did not appear; see " + log_path)
        plan = workloads(mnt, args.files)
        os.statvfs(mnt)
        for _name, fn, _ops in plan:
            fn()
            time.sleep(0.3)  # let asynchronous requests (RELEASE, FORGET) land before the marker
            os.statvfs(mnt)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    opcode = re.compile(r"opcode: (\w+)")
    sections, current = [], None
    with open(log_path) as f:
        for line in f:
            m = opcode.search(line)
            if not m:
                continue
            if m.group(1) == "STATFS":
                if current is not None:
                    sections.append(current)
                current = Counter()
            elif current is not None:
                current[m.group(1)] += 1
    print("requests per op (%s, -o %s, %d files)" % (args.syncfs, args.options or "(defaults)", args.files))
    for (name, _fn, ops), counts in zip(plan, sections):
        per = ", ".join("%s %.2f" % (k, v / ops) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        print("  %-42s %s" % (name, per or "none"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
