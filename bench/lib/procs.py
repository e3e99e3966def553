"""Process groups for the benchmark: CPU accounting and guaranteed cleanup.

Every process a tool needs (daemon, watcher, the short-lived rsync runs it forks, a FUSE
daemon that detaches) is started inside one cgroup per tool run, so
  - CPU seconds include children that come and go (each rsync run of the classic script), and
  - stopping the tool kills everything it started, even processes that daemonized.
Preference: cgroup v1 cpuacct (exact usage in ns), then cgroup v2 (cpu.stat usage_usec),
then, without cgroups, the processes of the sessions we started read from /proc.
"""
import os
import signal
import subprocess
import time

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _mounts():
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                yield parts[1], parts[2], parts[3].split(",")


def _find_cgroup_root():
    v1 = v2 = None
    for mnt, fstype, opts in _mounts():
        if fstype == "cgroup" and "cpuacct" in opts and v1 is None:
            v1 = mnt
        elif fstype == "cgroup2" and v2 is None:
            v2 = mnt
    return v1, v2


def _proc_stat(pid):
    """(session id, cpu seconds incl. reaped children) of a live pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    # fields[0] is state (field 3); utime..cstime are fields 14..17.
    sid = int(fields[3])
    ticks = sum(int(x) for x in fields[11:15])
    return sid, ticks / _CLK_TCK


class CpuGroup:
    """One tool run's processes. Use preexec() as Popen's preexec_fn."""

    def __init__(self, name):
        self.name = name
        self.sessions = set()
        self.path = None
        self.mode = "proc"
        v1, v2 = _find_cgroup_root()
        for mode, root in (("v1", v1), ("v2", v2)):
            if root is None:
                continue
            path = os.path.join(root, f"syncfs-bench-{os.getpid()}-{name}")
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            except OSError:
                continue
            self.path, self.mode = path, mode
            break
        self._dead_cpu = 0.0

    def preexec(self):
        """Runs in the child before exec: join the cgroup and start a new session."""
        os.setsid()
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def popen(self, argv, **kw):
        p = subprocess.Popen(argv, preexec_fn=self.preexec, **kw)
        self.sessions.add(p.pid)
        return p

    def run(self, argv, timeout, **kw):
        p = self.popen(argv, **kw)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise

    def pids(self):
        if self.path:
            try:
                with open(os.path.join(self.path, "cgroup.procs")) as f:
                    return [int(x) for x in f.read().split()]
            except OSError:
                return []
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = _proc_stat(int(d))
                if st and st[0] in self.sessions:
                    out.append(int(d))
        return out

    def cpu_seconds(self):
        """CPU seconds (user+system) used by the group so far, children included."""
        if self.mode == "v1":
            with open(os.path.join(self.path, "cpuacct.usage")) as f:
                return int(f.read()) / 1e9
        if self.mode == "v2":
            with open(os.path.join(self.path, "cpu.stat")) as f:
                for line in f:
                    k, v = line.split()
                    if k == "usage_usec":
                        return int(v) / 1e6
            return 0.0
        total = 0.0
        for pid in self.pids():
            st = _proc_stat(pid)
            if st:
                total += st[1]
        return total

    def kill(self, grace=2.0):
        """SIGTERM everything, then SIGKILL what is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.pids():
                time.sleep(0.05)
        # Reap our direct children so they do not linger as zombies.
        for pid in list(self.sessions):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def remove(self):
        self.kill()
        if self.path:
            for _ in range(50):
                try:
                    os.rmdir(self.path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            self.path = None
