"""One tool on one tree: the scenarios in order, with as few tool starts as is honest.

A start costs the tool's full startup sync (for 100k files several seconds), so the tool is
started once and runs the scenarios one after another. It is stopped, the leftovers of what it
ran are removed from SOURCE and MIRROR while nothing watches, and it is started again, only when
what came before would change what the next scenario measures:
  - after a scenario that leaves thousands of files (Scenario.leaves_files: sustained, burst),
  - when the tool was still sending at the end of a scenario (a backlog that would leak into
    the next measurement, e.g. the classic script after a burst),
  - after a failed scenario (its state is unknown).
Every start is followed by a check that the mirror equals the source; every measurement starts
with the wire quiet for 0.3 s.
"""
import os
import shutil
import subprocess
import time

from harness import wait_converged, write_file
from scenarios import ScenarioError
from tools import ToolError

FAILURES = (ToolError, ScenarioError, TimeoutError, OSError, subprocess.SubprocessError)


def probe(tool, tree, timeout=60):
    """Write probe files until one shows up on the mirror: proves the watcher is live (the
    classic script's `inotifywait -q` never says when its watches are set)."""
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        i += 1
        name = f".probe-{i}"
        data = os.urandom(64)
        write_file(os.path.join(tool.write_root, name), data)
        step = time.monotonic() + 2
        while time.monotonic() < step:
            try:
                with open(os.path.join(tree.mirror, name), "rb") as f:
                    if f.read() == data:
                        return
            except FileNotFoundError:
                pass
            time.sleep(0.005)
    raise ToolError(f"no change reached the mirror within {timeout} s of starting")


def _session(scenarios, i):
    """The scenarios a start at index i serves: up to and including the next one that leaves
    files (a restart follows it anyway)."""
    out = []
    for sc in scenarios[i:]:
        out.append(sc)
        if sc.leaves_files:
            break
    return out


def run_tool_on_tree(ctx, tool, tree, scenarios, phases):
    """Yields (scenario, result) for each scenario in order; stops the tool and removes its
    leftovers when done (also when the caller stops iterating). The directories of all
    scenarios a start serves are made in SOURCE before it, so the tool's own startup sync
    copies them and no scenario waits for a mkdir to replicate (15 s for lsyncd's default)."""
    running = False
    left, states = [], {}
    try:
        for i, sc in enumerate(scenarios):
            try:
                if not running:
                    for s in _session(scenarios, i):
                        states[s.name] = s.prepare(tree.src, tool.name)
                        left += s.leftovers(tool.name)
                    with phases("tool start", f"{tool.name} {tree.label()}"):
                        running = True
                        tool.start(tree, f"{tree.nfiles}-{sc.name}")
                        if tool.delay_s <= 1:
                            probe(tool, tree)
                        # Later scenarios of this start begin where the previous one ended:
                        # converged by its own check (a tree walk costs seconds at 100k).
                        wait_converged(tree.src, tree.mirror, timeout=120)
                with phases(sc.name, f"{tool.name} {tree.label()}"):
                    ctx.proxy.quiesce(quiet=0.3, cap=10)
                    res = sc.measure(ctx, tool, tree, states[sc.name])
                fresh = sc.leaves_files or ctx.proxy.idle_at is None
            except FAILURES as e:
                res, fresh = {"error": str(e)}, True
            yield sc, res
            if fresh:
                with phases("stop + cleanup", f"{tool.name} {tree.label()}"):
                    _stop(tool, tree, left)
                running, left = False, []
    finally:
        if running or left:
            _stop(tool, tree, left)


def _stop(tool, tree, left):
    tool.stop()
    for root in (tree.src, tree.mirror):
        for rel in left:
            shutil.rmtree(os.path.join(root, rel), ignore_errors=True)
        for name in os.listdir(root):
            if name.startswith(".probe-"):
                os.unlink(os.path.join(root, name))
