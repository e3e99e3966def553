"""The replication tools under test, each behind the same small interface.

A Tool is started on one tree (SOURCE + MIRROR directory pair) with the wire proxy in front of
its daemon, and exposes `write_root`: where the workload writes (SOURCE for the baselines, the
FUSE mount for syncfs). start() returns only when the tool is watching and its initial sync is
done; the caller then checks the mirror equals the source before measuring.

Baselines use the Debian binaries exactly as an operator runs them:
  classic   rsync --daemon + `inotifywait -mrq -e create,move,delete,modify SRC | while read f;
            do rsync -az --delete SRC/ rsync://host:port/mod; done` after one full rsync
  lsyncd    default.rsync to the rsync daemon, once with its default delay, once with delay=0
syncfs: syncfsd (mirror side) + the syncfs FUSE mount with -o mirror=rsync://host:port/mod.
"""
import os
import shutil
import socket
import subprocess
import time

from procs import CpuGroup


class ToolError(Exception):
    """The tool could not be started or did not become ready: the reason is the message."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ToolError(f"{what} exited with status {proc.returncode} before listening "
                            f"on 127.0.0.1:{port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise ToolError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


def write_module_conf(path, mirror, extra_global=""):
    """rsyncd.conf with one writable module `mod` at `mirror` (read by rsync and syncfsd)."""
    with open(path, "w") as f:
        f.write(f"use chroot = no\n{extra_global}\n[mod]\n    path = {mirror}\n"
                "    read only = no\n    uid = root\n    gid = root\n")


class Tool:
    name = "?"
    label = "?"
    delay_s = 0.0          # configured coalescing delay: readiness probes are skipped if > 0
    baseline = True

    def __init__(self, ctx):
        self.ctx = ctx
        self.group = None
        self.write_root = None

    def start(self, tree, tag):
        raise NotImplementedError

    def stop(self):
        if self.group:
            self.group.remove()
            self.group = None

    def _new_group(self, tag):
        self.group = CpuGroup(f"{self.name}-{tag}")
        self.logdir = os.path.join(self.ctx.logdir, f"{self.name}-{tag}")
        os.makedirs(self.logdir, exist_ok=True)

    def _log(self, name):
        return open(os.path.join(self.logdir, name), "ab")

    def _start_rsync_daemon(self, mirror):
        port = free_port()
        conf = os.path.join(self.logdir, "rsyncd.conf")
        write_module_conf(conf, mirror,
                          f"log file = {os.path.join(self.logdir, 'rsyncd.log')}\n"
                          f"pid file = {os.path.join(self.logdir, 'rsyncd.pid')}")
        p = self.group.popen(["rsync", "--daemon", "--no-detach", f"--config={conf}",
                              f"--port={port}", "--address=127.0.0.1"],
                             stdout=self._log("rsyncd.out"), stderr=subprocess.STDOUT)
        wait_port(port, p, 10, "rsync --daemon")
        self.ctx.proxy.set_target(port)
        return port

    def url(self):
        return f"rsync://127.0.0.1:{self.ctx.proxy.port}/mod"


class Classic(Tool):
    name = "classic"
    label = "inotify+rsync"

    SCRIPT = ('inotifywait -mrq -e create,move,delete,modify "$1" | '
              'while read f; do rsync -az --delete "$1"/ "$2"; done')

    def start(self, tree, tag):
        self._new_group(tag)
        self._start_rsync_daemon(tree.mirror)
        rc = self.group.run(["rsync", "-az", "--delete", tree.src + "/", self.url()],
                            timeout=1800, stdout=self._log("initial.out"),
                            stderr=subprocess.STDOUT)
        if rc != 0:
            raise ToolError(f"initial rsync exited {rc}: "
                            f"{tail(os.path.join(self.logdir, 'initial.out'))}")
        self.proc = self.group.popen(["bash", "-c", self.SCRIPT, "classic", tree.src, self.url()],
                                     stdout=self._log("loop.out"), stderr=subprocess.STDOUT)
        self.write_root = tree.src


class RsyncDaemon(Tool):
    """Only the stock rsync daemon on a tree's MIRROR, behind ctx.proxy: shared by the lsyncd
    lanes of one tree (see lanes.py)."""
    name = "rsyncd"
    label = "rsync --daemon"

    def start(self, tree, tag):
        self._new_group(tag)
        self._start_rsync_daemon(tree.mirror)


class Lsyncd(Tool):
    """lsyncd default.rsync; delay None = lsyncd's own default (15 s in 2.2).
    `exclude`: source-relative directories this instance ignores (lsyncd's `exclude`, so no
    event below them is queued and its rsync runs neither send nor delete there).
    own_daemon=False: use the rsync daemon already behind ctx.proxy (an RsyncDaemon)."""

    def __init__(self, ctx, delay, exclude=(), own_daemon=True):
        super().__init__(ctx)
        self.delay = delay
        self.exclude = list(exclude)
        self.own_daemon = own_daemon
        self.name = "lsyncd" if delay is None else f"lsyncd{delay}"
        self.label = "lsyncd (default delay)" if delay is None else f"lsyncd delay={delay}"
        self.delay_s = 15.0 if delay is None else float(delay)

    def lane(self, ctx, exclude):
        """An independent instance with the same settings, for a parallel lane."""
        return Lsyncd(ctx, self.delay, exclude=exclude, own_daemon=False)

    def start(self, tree, tag):
        self._new_group(tag)
        if self.own_daemon:
            self._start_rsync_daemon(tree.mirror)
        log = os.path.join(self.logdir, "lsyncd.log")
        conf = os.path.join(self.logdir, "lsyncd.conf.lua")
        extra = "" if self.delay is None else f"    delay = {self.delay},\n"
        if self.exclude:
            extra += ("    exclude = { " + ", ".join(f'"/{d}/"' for d in self.exclude)
                      + " },\n")
        with open(conf, "w") as f:
            f.write("settings {\n"
                    "    nodaemon = true,\n"
                    f"    logfile = \"{log}\",\n"
                    f"    statusFile = \"{os.path.join(self.logdir, 'lsyncd.status')}\",\n"
                    "}\n"
                    "sync {\n"
                    "    default.rsync,\n"
                    f"    source = \"{tree.src}/\",\n"
                    f"    target = \"{self.url()}/\",\n"
                    f"{extra}"
                    "    rsync = { archive = true, compress = true },\n"
                    "}\n")
        self.proc = self.group.popen(["lsyncd", "-nodaemon", conf],
                                     stdout=self._log("lsyncd.out"), stderr=subprocess.STDOUT)
        # lsyncd logs "Startup of <src> finished" once its initial full rsync is done; the
        # inotify watches are in place before that rsync starts.
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ToolError(f"lsyncd exited {self.proc.returncode}: "
                                f"{tail(os.path.join(self.logdir, 'lsyncd.out'))} {tail(log)}")
            try:
                with open(log, errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
            if "Failure on startup" in text or "Error:" in text:
                raise ToolError("lsyncd startup failed: " + tail(log, 2))
            if "Startup of" in text and "finished" in text:
                break
            time.sleep(0.05)
        else:
            raise ToolError("lsyncd did not finish its startup sync")
        self.write_root = tree.src


def find_syncfs_binaries(build):
    """Paths of syncfs, syncfsd, syncfsctl under `build`, or a reason they are missing."""
    want = {"syncfs": "fs/syncfs", "syncfsd": "server/syncfsd", "syncfsctl": "tools/syncfsctl"}
    found = {}
    for name, rel in want.items():
        p = os.path.join(build, rel)
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            p = None
            if os.path.isdir(build):
                r = subprocess.run(["find", build, "-type", "f", "-name", name, "-perm", "-u+x"],
                                   capture_output=True, text=True)
                hits = sorted(r.stdout.split(), key=len)
                p = hits[0] if hits else None
        if p is None:
            return None, f"{name} not built under {build}"
        found[name] = p
    return found, None


class Syncfs(Tool):
    name = "syncfs"
    label = "syncfs"
    baseline = False

    def __init__(self, ctx, bins):
        super().__init__(ctx)
        self.bins = bins
        self.mnt = None

    def start(self, tree, tag):
        self._new_group(tag)
        port = free_port()
        conf = os.path.join(self.logdir, "syncfsd.conf")
        write_module_conf(conf, tree.mirror)
        d = self.group.popen([self.bins["syncfsd"], "--config", conf, "--port", str(port),
                              "--no-detach"],
                             stdout=self._log("syncfsd.out"), stderr=subprocess.STDOUT)
        wait_port(port, d, 15, "syncfsd")
        self.ctx.proxy.set_target(port)
        self.mnt = os.path.join(tree.base, f"mnt-{tag}")
        state = os.path.join(tree.base, f"state-{tag}")
        os.makedirs(self.mnt, exist_ok=True)
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        # -f keeps syncfs in the foreground like the other tools' daemons, so its log and exit
        # status are ours; the cgroup catches it either way.
        m = self.group.popen([self.bins["syncfs"], tree.src, self.mnt, "-f", "-o",
                              f"mirror={self.url()},state={state}"],
                             stdout=self._log("syncfs.out"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if m.poll() is not None and m.returncode != 0:
                raise ToolError(f"syncfs exited {m.returncode}: "
                                f"{tail(os.path.join(self.logdir, 'syncfs.out'))}")
            if time.monotonic() > deadline:
                raise ToolError("mount did not appear within 30 s")
            time.sleep(0.02)
        self.write_root = self.mnt
        limit = self.ctx.start_timeout
        try:
            r = subprocess.run([self.bins["syncfsctl"], "wait", self.mnt, "--timeout", str(limit)],
                               capture_output=True, text=True, timeout=limit + 10)
        except subprocess.TimeoutExpired:
            raise ToolError(f"syncfsctl wait did not return within {limit + 10} s") from None
        if r.returncode != 0:
            raise ToolError(f"syncfsctl wait exited {r.returncode}: "
                            f"{(r.stderr or r.stdout).strip()[:200]}")

    def stop(self):
        if self.mnt and os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        super().stop()
        if self.mnt:
            try:
                os.rmdir(self.mnt)
            except OSError:
                pass
            self.mnt = None
