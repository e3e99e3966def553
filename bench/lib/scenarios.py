"""The measured workloads. Each scenario is prepare(tree, tag) -> state (run before the tool
starts, so its files are part of the converged starting tree) and measure(ctx, tool, tree,
state) -> {metric: value}. Times are wall-clock seconds from time.perf_counter(); "on the
mirror" always means read back from the MIRROR directory with the expected content.
"""
import os
import random
import shutil
import threading
import time

from harness import FILE_SIZE, write_file, percentile, differences, same_content

POLL = 0.001          # latency poller period: cheap stat/read of one mirror file
MiB = 1024 * 1024


IDLE_CAP = 30.0       # how long to wait for a tool to stop sending after a burst/sustained run


class ScenarioError(Exception):
    pass


def _idle_after(ctx, t_end):
    """Seconds from the end of the workload to the tool's last byte on the wire; None when it
    was still sending IDLE_CAP s after the mirror converged (a backlog it had not worked off)."""
    return None if ctx.proxy.idle_at is None else max(0.0, ctx.proxy.idle_at - t_end)


def _wait_file(path, data, deadline):
    while True:
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return time.perf_counter()
        except FileNotFoundError:
            pass
        if time.perf_counter() > deadline:
            raise ScenarioError(f"{path} did not reach the mirror with its content in time")
        time.sleep(POLL)


# ---------------------------------------------------------------- latency
class Latency:
    name = "latency"

    def __init__(self, repeats, timeout):
        self.repeats = repeats
        self.timeout = timeout

    def prepare(self, tree, tag):
        d = f"lat-{tag}"
        os.makedirs(os.path.join(tree.src, d), exist_ok=True)
        return d

    def measure(self, ctx, tool, tree, d, repeats=None):
        rnd = random.Random()
        lat = []
        for i in range(repeats or self.repeats):
            data = os.urandom(FILE_SIZE)
            src = os.path.join(tool.write_root, d, f"f{i:03d}")
            dst = os.path.join(tree.mirror, d, f"f{i:03d}")
            t0 = time.perf_counter()
            write_file(src, data)
            t1 = _wait_file(dst, data, t0 + self.timeout)
            lat.append(t1 - t0)
            # Let the tool finish whatever the event set off, so repeats are independent.
            ctx.proxy.quiesce(quiet=0.15, cap=5)
            time.sleep(rnd.uniform(0, 0.05))
        return {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "n": len(lat),
                "samples": lat}


# ---------------------------------------------------------------- burst
def write_burst(root, nfiles, rnd):
    """nfiles files of 4 KiB in new directories of 1000 below root; returns the names."""
    names = []
    for i in range(nfiles):
        if i % 1000 == 0:
            os.mkdir(os.path.join(root, f"b{i // 1000:02d}"))
        rel = os.path.join(f"b{i // 1000:02d}", f"f{i % 1000:04d}")
        write_file(os.path.join(root, rel), rnd.randbytes(FILE_SIZE))
        names.append(rel)
    return names


class Burst:
    name = "burst"

    def __init__(self, nfiles, timeout):
        self.nfiles = nfiles
        self.timeout = timeout

    def prepare(self, tree, tag):
        d = f"burst-{tag}"
        os.makedirs(os.path.join(tree.src, d), exist_ok=True)
        return d

    def native_time(self, tree):
        """The same writer against a directory no tool watches, on the same filesystem."""
        nd = os.path.join(tree.base, "native-burst")
        shutil.rmtree(nd, ignore_errors=True)
        os.mkdir(nd)
        t0 = time.perf_counter()
        write_burst(nd, self.nfiles, random.Random(1))
        t = time.perf_counter() - t0
        shutil.rmtree(nd)
        return t

    def measure(self, ctx, tool, tree, d):
        native = self.native_time(tree)
        b0, c0 = ctx.proxy.bytes(), tool.group.cpu_seconds()
        t0 = time.perf_counter()
        names = write_burst(os.path.join(tool.write_root, d), self.nfiles, random.Random(2))
        t_last = time.perf_counter()
        pending = [os.path.join(tree.mirror, d, n) for n in names]
        deadline = t_last + self.timeout
        while pending:
            left = []
            for p in pending:
                try:
                    if os.stat(p).st_size != FILE_SIZE:
                        left.append(p)
                except FileNotFoundError:
                    left.append(p)
            pending = left
            if not pending:
                break
            if time.perf_counter() > deadline:
                raise ScenarioError(f"{len(pending)} of {self.nfiles} burst files not on the "
                                    f"mirror {self.timeout:.0f} s after the last write")
            time.sleep(0.005)
        t_conv = time.perf_counter()
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=IDLE_CAP)
        cpu = tool.group.cpu_seconds() - c0
        idle = _idle_after(ctx, t_last)
        bad = [n for n in names[:: max(1, len(names) // 200)]
               if not same_content(os.path.join(tool.write_root, d, n),
                                   os.path.join(tree.mirror, d, n))]
        if bad:
            raise ScenarioError(f"mirror content differs for {bad[0]}")
        return {"writer": t_last - t0, "native": native, "writer_ratio": (t_last - t0) / native,
                "converge": t_conv - t_last, "bytes": b1 - b0, "cpu": cpu, "idle": idle}


# ---------------------------------------------------------------- rename
class Rename:
    name = "rename"

    def __init__(self, nfiles, timeout):
        self.nfiles = nfiles
        self.timeout = timeout

    def prepare(self, tree, tag):
        d = f"ren-{tag}"
        a = os.path.join(tree.src, d, "a")
        shutil.rmtree(os.path.join(tree.src, d), ignore_errors=True)
        os.makedirs(a)
        rnd = random.Random(3)
        for i in range(self.nfiles):
            write_file(os.path.join(a, f"f{i:04d}"), rnd.randbytes(FILE_SIZE))
        return d

    def measure(self, ctx, tool, tree, d):
        ma, mb = os.path.join(tree.mirror, d, "a"), os.path.join(tree.mirror, d, "b")
        b0 = ctx.proxy.quiesce(quiet=0.3, cap=5)
        t0 = time.perf_counter()
        os.rename(os.path.join(tool.write_root, d, "a"), os.path.join(tool.write_root, d, "b"))
        deadline = t0 + self.timeout
        while True:
            if not os.path.exists(ma) and os.path.isdir(mb):
                try:
                    with os.scandir(mb) as it:
                        ok = sum(1 for e in it if e.is_file() and e.stat().st_size == FILE_SIZE)
                except FileNotFoundError:
                    ok = 0
                if ok == self.nfiles:
                    break
            if time.perf_counter() > deadline:
                raise ScenarioError(f"renamed directory not converged on the mirror in "
                                    f"{self.timeout:.0f} s")
            time.sleep(POLL * 2)
        t1 = time.perf_counter()
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=20)
        return {"time": t1 - t0, "bytes": b1 - b0}


# ---------------------------------------------------------------- 4 KiB in a 1 GiB file
class BigFile:
    name = "bigfile"
    SIZE = 1024 * MiB
    OFFSET = 512 * MiB

    def __init__(self, timeout):
        self.timeout = timeout

    def prepare(self, tree, tag):
        path = os.path.join(tree.src, "big", "big.bin")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path))
            with open(path, "wb") as f:
                for _ in range(self.SIZE // (16 * MiB)):
                    f.write(os.urandom(16 * MiB))
            # Seed the mirror locally: the scenario measures the change, not the first copy.
            tree.sync_locally()
        return "big/big.bin"

    def measure(self, ctx, tool, tree, rel):
        data = os.urandom(FILE_SIZE)
        dst = os.path.join(tree.mirror, rel)
        b0 = ctx.proxy.quiesce(quiet=0.3, cap=5)
        t0 = time.perf_counter()
        fd = os.open(os.path.join(tool.write_root, rel), os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.OFFSET)
        finally:
            os.close(fd)
        deadline = t0 + self.timeout
        while True:
            try:
                fd = os.open(dst, os.O_RDONLY)
                try:
                    if (os.fstat(fd).st_size == self.SIZE
                            and os.pread(fd, FILE_SIZE, self.OFFSET) == data):
                        break
                finally:
                    os.close(fd)
            except FileNotFoundError:
                pass
            if time.perf_counter() > deadline:
                raise ScenarioError(f"changed block not on the mirror in {self.timeout:.0f} s")
            time.sleep(0.005)
        t1 = time.perf_counter()
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=30)
        return {"time": t1 - t0, "bytes": b1 - b0}


# ---------------------------------------------------------------- sustained mixed workload
class Sustained:
    """`rate` ops/s for `duration` s: 40% create (4 KiB), 30% append (1 KiB), 15% rename,
    15% delete. Appends/renames/deletes only touch files whose previous change is already on
    the mirror, so every op has its own, unambiguous "visible on the mirror" moment; its lag is
    that moment minus the op's time. A monitor thread checks pending ops every 2 ms."""
    name = "sustained"

    def __init__(self, duration, rate, grace):
        self.duration = duration
        self.rate = rate
        self.grace = grace

    def prepare(self, tree, tag):
        d = f"sus-{tag}"
        shutil.rmtree(os.path.join(tree.src, d), ignore_errors=True)
        os.makedirs(os.path.join(tree.src, d))
        return d

    def measure(self, ctx, tool, tree, d):
        rnd = random.Random(4)
        wroot, mroot = os.path.join(tool.write_root, d), os.path.join(tree.mirror, d)
        lock = threading.Lock()
        pending = []          # (t_op, check(), name)
        settled = []          # names (relative) whose state is on the mirror
        contents = {}         # name -> bytes (what the mirror must hold)
        lags = []
        stop = threading.Event()

        def check_content(name):
            def ok():
                try:
                    with open(os.path.join(mroot, name), "rb") as f:
                        return f.read() == contents[name]
                except FileNotFoundError:
                    return False
            return ok

        def check_gone(name):
            return lambda: not os.path.exists(os.path.join(mroot, name))

        def monitor():
            while not stop.is_set():
                with lock:
                    items = list(pending)
                done = [it for it in items if it[1]()]
                if done:
                    now = time.perf_counter()
                    with lock:
                        for it in done:
                            pending.remove(it)
                            lags.append(now - it[0])
                            if it[2] is not None:
                                settled.append(it[2])
                time.sleep(0.002)

        mon = threading.Thread(target=monitor, daemon=True)
        c0, b0 = tool.group.cpu_seconds(), ctx.proxy.bytes()
        mon.start()
        t_start = time.perf_counter()
        n_ops = int(self.duration * self.rate)
        serial = 0
        for i in range(n_ops):
            target = t_start + i / self.rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            r = rnd.random()
            with lock:
                victim = settled.pop(rnd.randrange(len(settled))) if settled and r >= 0.4 else None
            t = time.perf_counter()
            if victim is None:
                serial += 1
                name = f"c{serial:05d}"
                contents[name] = os.urandom(FILE_SIZE)
                write_file(os.path.join(wroot, name), contents[name])
                item = (t, check_content(name), name)
            elif r < 0.7:
                extra = os.urandom(1024)
                with open(os.path.join(wroot, victim), "ab") as f:
                    f.write(extra)
                contents[victim] += extra
                item = (t, check_content(victim), victim)
            elif r < 0.85:
                serial += 1
                new = f"r{serial:05d}"
                os.rename(os.path.join(wroot, victim), os.path.join(wroot, new))
                contents[new] = contents.pop(victim)
                ok_new, gone_old = check_content(new), check_gone(victim)
                item = (t, lambda a=ok_new, b=gone_old: a() and b(), new)
            else:
                os.unlink(os.path.join(wroot, victim))
                del contents[victim]
                item = (t, check_gone(victim), None)
            with lock:
                pending.append(item)
        t_end = time.perf_counter()
        deadline = t_end + self.grace
        while time.perf_counter() < deadline:
            with lock:
                if not pending:
                    break
            time.sleep(0.01)
        stop.set()
        mon.join()
        now = time.perf_counter()
        with lock:
            unresolved = len(pending)
            # Ops never seen count with their lag so far: the percentiles are lower bounds then.
            all_lags = lags + [now - it[0] for it in pending]
        ndiff, _ = differences(wroot, mroot)
        converged = unresolved == 0 and ndiff == 0
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=IDLE_CAP)
        idle = _idle_after(ctx, t_end)
        return {"idle": idle, "p50": percentile(all_lags, 50), "p99": percentile(all_lags, 99),
                "ops": n_ops, "unresolved": unresolved, "converged": converged,
                "diff": ndiff, "cpu": tool.group.cpu_seconds() - c0, "bytes": b1 - b0,
                "achieved_rate": n_ops / (t_end - t_start)}
