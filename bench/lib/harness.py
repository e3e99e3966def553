"""Shared plumbing: the wire proxy handle, benchmark trees, tree comparison, waiting."""
import os
import random
import socket
import subprocess
import sys
import time

from procs import CpuGroup

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_SIZE = 4096
FILES_PER_DIR = 1000


def log(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


class Proxy:
    """The byte-counting proxy (wireproxy.py) run as its own process, so its work never
    competes with the latency poller for the interpreter lock."""

    def __init__(self, workdir, name="proxy"):
        self.port = self._free_port()
        self.control = os.path.join(workdir, f"{name}.sock")
        self.group = CpuGroup(name)
        self.proc = self.group.popen([sys.executable, os.path.join(HERE, "wireproxy.py"),
                                      "--listen", str(self.port), "--control", self.control],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("wire proxy failed to start")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.control)
        self.rfile = self.sock.makefile("rb")

    @staticmethod
    def _free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def _ask(self, line):
        self.sock.sendall(line.encode() + b"\n")
        return self.rfile.readline().decode().strip()

    def set_target(self, port):
        if self._ask(f"target {port}") != "ok":
            raise RuntimeError("wire proxy refused target")

    def bytes(self):
        up, down, _ = self._ask("stats").split()
        return int(up) + int(down)

    def quiesce(self, quiet=1.0, cap=20.0):
        """Wait until no byte crossed the proxy for `quiet` s (at most `cap` s); the count.
        Afterwards self.idle_at is the perf_counter() time the last byte was seen (None when
        the tool was still sending at the cap: it had not caught up)."""
        deadline = time.monotonic() + cap
        last = self.bytes()
        since = time.monotonic()
        since_pc = time.perf_counter()
        self.idle_at = None
        while time.monotonic() < deadline:
            time.sleep(min(0.05, quiet / 3))
            now = self.bytes()
            if now != last:
                last, since, since_pc = now, time.monotonic(), time.perf_counter()
            elif time.monotonic() - since >= quiet:
                self.idle_at = since_pc
                break
        return last

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.group.remove()


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class Phases:
    """Wall-clock time of each phase of a run, so a run says where its time went.
    Use: `with phases("start", detail): ...`; summary() sums the time per kind."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.rows = []        # (kind, detail, seconds)

    def __call__(self, kind, detail=""):
        return _PhaseTimer(self, kind, detail)

    def total(self):
        return time.monotonic() - self.t0

    def summary(self):
        per_kind = {}
        for kind, _, secs in self.rows:
            per_kind[kind] = per_kind.get(kind, 0.0) + secs
        lines = [f"{kind:32s} {secs:7.1f} s" for kind, secs in
                 sorted(per_kind.items(), key=lambda kv: -kv[1])]
        lines.append(f"{'total (wall clock)':32s} {self.total():7.1f} s")
        return "\n".join(lines)


class _PhaseTimer:
    def __init__(self, phases, kind, detail):
        self.phases, self.kind, self.detail = phases, kind, detail

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.phases.rows.append((self.kind, self.detail, time.monotonic() - self.t0))
        return False


class Tree:
    """SOURCE and MIRROR of `nfiles` 4 KiB files in directories of 1000 (d000, d001, ...),
    converged by a local `rsync -a` before any tool runs (so every tool starts from a converged
    pair). `rename_dir` is the current name of the first directory, which the rename scenario
    renames back and forth (so the tree keeps exactly `nfiles` files)."""

    def __init__(self, workdir, nfiles):
        self.nfiles = nfiles
        self.base = os.path.join(workdir, f"tree{nfiles}")
        self.src = os.path.join(self.base, "src")
        self.mirror = os.path.join(self.base, "mirror")
        self.rename_dir = "d000"

    def label(self):
        return f"{self.nfiles // 1000}k" if self.nfiles >= 1000 else str(self.nfiles)

    def populate(self):
        rnd = random.Random(self.nfiles)
        os.makedirs(self.src)
        os.makedirs(self.mirror)
        for i in range(self.nfiles):
            d = os.path.join(self.src, f"d{i // FILES_PER_DIR:03d}")
            if i % FILES_PER_DIR == 0:
                os.mkdir(d)
            write_file(os.path.join(d, f"f{i % FILES_PER_DIR:04d}"), rnd.randbytes(FILE_SIZE))
        self.sync_locally()

    def sync_locally(self):
        subprocess.run(["rsync", "-a", "--delete", self.src + "/", self.mirror + "/"],
                       check=True)


def snapshot(root):
    """{relative path: (kind, size)} of everything below root."""
    out = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(root, rel))
        except FileNotFoundError:
            continue
        with it:
            for e in it:
                r = os.path.join(rel, e.name)
                if e.is_symlink():
                    out[r] = ("l", 0)
                elif e.is_dir():
                    out[r] = ("d", 0)
                    stack.append(r)
                else:
                    try:
                        out[r] = ("f", e.stat().st_size)
                    except FileNotFoundError:
                        pass
    return out


def differences(a, b, limit=3):
    sa, sb = snapshot(a), snapshot(b)
    diff = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
    return len(diff), diff[:limit]


def wait_converged(src, mirror, timeout):
    """Wait until MIRROR has SOURCE's names, types and sizes; raise with a sample on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        n, sample = differences(src, mirror)
        if n == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"mirror differs from source in {n} paths after {timeout:.0f} s "
                               f"(e.g. {', '.join(sample)})")
        time.sleep(0.2)


def same_content(a, b):
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)
