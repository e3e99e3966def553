#!/usr/bin/env python3
"""One pass of the bench/fs workloads in DIR; prints "name seconds" lines.

Workloads (as in issue 3): write 1 GiB (+fsync), cold read (caches dropped), warm read,
create 10k 4 KiB files, warm stat of 10k files, rename 10k, unlink 10k.
"""
import os
import sys
import time

MiB = 1 << 20


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def small_files(root, n):
    """The small-file workloads on n files in ROOT/small: create (open O_CREAT|O_EXCL, write
    4 KiB, close), lstat of each, rename each to NAME.r, unlink the renamed ones. Returns
    (the directory, create, stat_all, rename_all, unlink_all); bench/fs/count_requests.py
    runs the same loops."""
    d = os.path.join(root, "small")
    os.mkdir(d)
    names = [os.path.join(d, "f%05d" % i) for i in range(n)]
    renamed = [p + ".r" for p in names]
    data = b"s" * 4096

    def create():
        for p in names:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)

    def stat_all():
        for p in names:
            os.lstat(p)

    def rename_all():
        for a, b in zip(names, renamed):
            os.rename(a, b)

    def unlink_all():
        for p in renamed:
            os.unlink(p)

    return d, create, stat_all, rename_all, unlink_all


def main():
    root = sys.argv[1]
    size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    nfiles = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
    big = os.path.join(root, "big")
    chunk = b"\xa5" * MiB

    def write_big():
        fd = os.open(big, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for _ in range(size_mib):
            os.write(fd, chunk)
        os.fsync(fd)
        os.close(fd)

    def read_big():
        fd = os.open(big, os.O_RDONLY)
        while os.read(fd, MiB):
            pass
        os.close(fd)

    print("write_1GiB %.4f" % timed(write_big), flush=True)
    drop_caches()
    print("cold_read %.4f" % timed(read_big), flush=True)
    read_big()
    print("warm_read %.4f" % timed(read_big), flush=True)
    os.unlink(big)

    d, create, stat_all, rename_all, unlink_all = small_files(root, nfiles)
    print("create_10k %.4f" % timed(create), flush=True)
    stat_all()
    print("stat_10k %.4f" % timed(stat_all), flush=True)
    print("rename_10k %.4f" % timed(rename_all), flush=True)
    print("unlink_10k %.4f" % timed(unlink_all), flush=True)
    os.rmdir(d)


if __name__ == "__main__":
    main()
