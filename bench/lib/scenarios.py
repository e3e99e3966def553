"""The measured workloads, run on a Tree while one tool runs on it.

A scenario has
  fixture(tree)            tree-level setup before any tool starts (default: nothing), part of
                           the converged starting pair every tool sees;
  prepare(root, tag)       per tool run: make its own directory below `root` (the SOURCE while
                           no tool runs, the tool's write root otherwise) -> state;
  leftovers(tag)           directories that prepare/measure leave behind, removed from SOURCE
                           and MIRROR while the tool is stopped;
  measure(ctx, tool, tree, state) -> {metric: value}.
`leaves_files` marks scenarios whose leftovers would change the tree the next scenario sees
(thousands of files): the tool is restarted after them on a cleaned tree.
Times are wall-clock seconds from time.perf_counter(); "on the mirror" always means read back
from the MIRROR directory with the expected content.
"""
import os
import random
import shutil
import threading
import time

from harness import FILE_SIZE, write_file, percentile, differences, same_content

POLL = 0.001          # latency poller period: cheap stat/read of one mirror file
MiB = 1024 * 1024


IDLE_CAP = 10.0       # how long to wait for a tool to stop sending after a burst/sustained run


class ScenarioError(Exception):
    pass


def _idle_after(ctx, t_end):
    """Seconds from the end of the workload to the tool's last byte on the wire; None when it
    was still sending IDLE_CAP s after the mirror converged (a backlog it had not worked off)."""
    return None if ctx.proxy.idle_at is None else max(0.0, ctx.proxy.idle_at - t_end)


def _wait_until(done, deadline, what, period):
    """Poll done() every `period` s; perf_counter() when it first holds, ScenarioError(what)
    once `deadline` (perf_counter) passed."""
    while not done():
        if time.perf_counter() > deadline:
            raise ScenarioError(what)
        time.sleep(period)
    return time.perf_counter()


def _holds(path, data):
    try:
        with open(path, "rb") as f:
            return f.read() == data
    except FileNotFoundError:
        return False


def _wait_file(path, data, deadline):
    return _wait_until(lambda: _holds(path, data), deadline,
                       f"{path} did not reach the mirror with its content in time", POLL)


def latency_sample(write_root, mirror, d, i, timeout):
    """One latency sample: write file d/fNNN (4 KiB, fresh random) below write_root, return the
    seconds until MIRROR/d/fNNN holds that content."""
    data = os.urandom(FILE_SIZE)
    name = os.path.join(d, f"f{i:03d}")
    t0 = time.perf_counter()
    write_file(os.path.join(write_root, name), data)
    return _wait_file(os.path.join(mirror, name), data, t0 + timeout) - t0


class Scenario:
    name = "?"
    prefix = None         # own directory "<prefix>-<tag>" per tool run, or None
    leaves_files = False

    def fixture(self, tree):
        pass

    def prepare(self, root, tag):
        if self.prefix is None:
            return None
        d = f"{self.prefix}-{tag}"
        os.makedirs(os.path.join(root, d), exist_ok=True)
        return d

    def leftovers(self, tag):
        return [] if self.prefix is None else [f"{self.prefix}-{tag}"]


# ---------------------------------------------------------------- latency
class Latency(Scenario):
    name = "latency"
    prefix = "lat"

    def __init__(self, repeats, timeout):
        self.repeats = repeats
        self.timeout = timeout

    def measure(self, ctx, tool, tree, d):
        rnd = random.Random()
        lat = []
        for i in range(self.repeats):
            lat.append(latency_sample(tool.write_root, tree.mirror, d, i, self.timeout))
            # Let the tool finish whatever the event set off, so repeats are independent.
            ctx.proxy.quiesce(quiet=0.15, cap=5)
            time.sleep(rnd.uniform(0, 0.05))
        return latency_result(lat)


def latency_result(lat, note=None):
    res = {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "n": len(lat),
           "samples": lat}
    if note:
        res["note"] = note
    return res


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


class Burst(Scenario):
    name = "burst"
    prefix = "burst"
    leaves_files = True

    def __init__(self, nfiles, timeout):
        self.nfiles = nfiles
        self.timeout = timeout

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

        def all_there():
            pending[:] = [p for p in pending if not _has_size(p, FILE_SIZE)]
            return not pending
        t_conv = _wait_until(all_there, t_last + self.timeout,
                             f"burst files not all on the mirror {self.timeout:.0f} s after "
                             "the last write", 0.005)
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


def _has_size(path, size):
    try:
        return os.stat(path).st_size == size
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- rename
class Rename(Scenario):
    """Renames the tree's first directory of 1000 files (Tree.rename_dir) to a new name; the
    next tool run renames it back, so the tree keeps its size and every tool renames the same
    1000 files, already on the mirror."""
    name = "rename"

    def __init__(self, timeout):
        self.timeout = timeout

    def measure(self, ctx, tool, tree, _state):
        old = tree.rename_dir
        new = "d000" if old != "d000" else "d000-renamed"
        nfiles = len(os.listdir(os.path.join(tool.write_root, old)))
        ma, mb = os.path.join(tree.mirror, old), os.path.join(tree.mirror, new)

        def converged():
            if os.path.exists(ma) or not os.path.isdir(mb):
                return False
            try:
                with os.scandir(mb) as it:
                    return sum(1 for e in it if e.is_file() and e.stat().st_size == FILE_SIZE) \
                        == nfiles
            except FileNotFoundError:
                return False
        b0 = ctx.proxy.quiesce(quiet=0.3, cap=5)
        t0 = time.perf_counter()
        os.rename(os.path.join(tool.write_root, old), os.path.join(tool.write_root, new))
        tree.rename_dir = new
        t1 = _wait_until(converged, t0 + self.timeout, "renamed directory not converged on "
                         f"the mirror in {self.timeout:.0f} s", POLL * 2)
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=20)
        return {"time": t1 - t0, "bytes": b1 - b0, "files": nfiles}


# ---------------------------------------------------------------- 4 KiB in a 1 GiB file
class BigFile(Scenario):
    """One 1 GiB random file per tree, made before any tool starts (the scenario measures the
    change, not the first copy); every tool run overwrites 4 KiB in its middle with fresh data."""
    name = "bigfile"
    SIZE = 1024 * MiB
    OFFSET = 512 * MiB
    REL = os.path.join("big", "big.bin")

    def __init__(self, timeout, workdir):
        self.timeout = timeout
        self.cache = os.path.join(workdir, "big.cache")

    def fixture(self, tree):
        """Random data made once per run (about 4 s of CPU per GiB), copied into each tree."""
        if not os.path.exists(self.cache):
            with open(self.cache + ".tmp", "wb") as f:
                for _ in range(self.SIZE // (16 * MiB)):
                    f.write(os.urandom(16 * MiB))
            os.rename(self.cache + ".tmp", self.cache)
        src, dst = os.path.join(tree.src, self.REL), os.path.join(tree.mirror, self.REL)
        for path in (src, dst):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(self.cache, src)
        # Seed the mirror locally (same content and mtime, as `rsync -a` would leave it).
        shutil.copy2(src, dst)

    def measure(self, ctx, tool, tree, _state):
        data = os.urandom(FILE_SIZE)
        dst = os.path.join(tree.mirror, self.REL)

        def changed():
            try:
                fd = os.open(dst, os.O_RDONLY)
            except FileNotFoundError:
                return False
            try:
                return (os.fstat(fd).st_size == self.SIZE
                        and os.pread(fd, FILE_SIZE, self.OFFSET) == data)
            finally:
                os.close(fd)
        b0 = ctx.proxy.quiesce(quiet=0.3, cap=5)
        t0 = time.perf_counter()
        fd = os.open(os.path.join(tool.write_root, self.REL), os.O_WRONLY)
        try:
            os.pwrite(fd, data, self.OFFSET)
        finally:
            os.close(fd)
        t1 = _wait_until(changed, t0 + self.timeout,
                         f"changed block not on the mirror in {self.timeout:.0f} s", 0.005)
        b1 = ctx.proxy.quiesce(quiet=1.0, cap=30)
        return {"time": t1 - t0, "bytes": b1 - b0}


# ---------------------------------------------------------------- sustained mixed workload
class Sustained(Scenario):
    """`rate` ops/s for `duration` s: 40% create (4 KiB), 30% append (1 KiB), 15% rename,
    15% delete. Appends/renames/deletes only touch files whose previous change is already on
    the mirror, so every op has its own, unambiguous "visible on the mirror" moment; its lag is
    that moment minus the op's time. A monitor thread checks pending ops every 2 ms."""
    name = "sustained"
    prefix = "sus"
    leaves_files = True

    def __init__(self, duration, rate, grace):
        self.duration = duration
        self.rate = rate
        self.grace = grace

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
            return lambda: _holds(os.path.join(mroot, name), contents[name])

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
