"""Latency of a timer-bound tool (lsyncd's default 15 s delay) in parallel lanes.

Why: each sample of lsyncd's default delay takes the full timer (~15.2 s), so 50 samples one
after another cost 13 minutes per tree, 38 minutes for the three trees: more than the whole
run may take. The sample is dominated by the timer, not by the machine, so independent
instances can run side by side without changing what is measured:

  - one lane = one complete lsyncd process (same settings as the serial runs) on the full tree
    of N files, writing and polling its own latency directory lat-<tool>-laneJ. Every lane
    `exclude`s the other lanes' directories, so each instance sees exactly one writer (its
    own) and its timer is started only by its own writes;
  - lanes of one tree share one stock rsync daemon behind their own byte-counting proxy
    (bytes are not reported for latency); lanes of all trees run at the same time;
  - lane starts are staggered evenly over one timer period, so the lanes' rsync runs (one per
    sample, ~0.1 s each) rarely overlap; between two samples a lane waits until its lsyncd has
    no rsync child left, plus 0-50 ms (as the serial latency waits for a quiet wire).
The samples of all lanes of a tree form its p50/p99; the report notes "K lanes".
"""
import math
import os
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from harness import Proxy, wait_converged
from scenarios import ScenarioError, latency_result, latency_sample
from tools import RsyncDaemon, ToolError


class _LaneCtx:
    """The parts of the run context a tool reads, with this tree's own proxy."""

    def __init__(self, ctx, proxy):
        self.logdir = ctx.logdir
        self.start_timeout = ctx.start_timeout
        self.proxy = proxy


class _Lane:
    def __init__(self, tool, tree, d, offset):
        self.tool, self.tree, self.d, self.offset = tool, tree, d, offset
        self.samples = []
        self.error = None

    def run(self, t_zero, repeats, timeout):
        rnd = random.Random()
        try:
            time.sleep(max(0.0, t_zero + self.offset - time.monotonic()))
            for i in range(repeats):
                self.samples.append(latency_sample(self.tool.write_root, self.tree.mirror,
                                                   self.d, i, timeout))
                deadline = time.monotonic() + 5
                while len(self.tool.group.pids()) > 1 and time.monotonic() < deadline:
                    time.sleep(0.01)      # its rsync run is still finishing
                time.sleep(rnd.uniform(0, 0.05))
        except (ScenarioError, OSError) as e:
            self.error = f"lane {self.d}: {e}"


def run_lanes(ctx, workdir, tool, trees, lanes, samples, timeout):
    """`samples` latency samples of `tool` (an Lsyncd) per tree, taken in `lanes` parallel lanes
    per tree, all trees at once. Returns {tree.nfiles: result dict | {"error": reason}}."""
    repeats = math.ceil(samples / lanes)
    per_tree = {}           # nfiles -> (proxy, daemon, [lanes])
    slots = len(trees) * lanes
    try:
        starts = []
        for ti, tree in enumerate(trees):
            proxy = Proxy(workdir, f"proxy-lanes-{tree.nfiles}")
            lctx = _LaneCtx(ctx, proxy)
            daemon = RsyncDaemon(lctx)
            per_tree[tree.nfiles] = (proxy, daemon, [])
            daemon.start(tree, f"{tree.nfiles}-lanes")
            dirs = [f"lat-{tool.name}-lane{j:02d}" for j in range(lanes)]
            for d in dirs:
                for root in (tree.src, tree.mirror):
                    os.makedirs(os.path.join(root, d), exist_ok=True)
            for j, d in enumerate(dirs):
                inst = tool.lane(lctx, exclude=[x for x in dirs if x != d])
                offset = (ti + j * len(trees)) * tool.delay_s / slots
                lane = _Lane(inst, tree, d, offset)
                per_tree[tree.nfiles][2].append(lane)
                starts.append((lane, f"{tree.nfiles}-lane{j:02d}"))
        # Startup = one full rsync of the tree per instance: run a few at once.
        with ThreadPoolExecutor(max_workers=4) as pool:
            for f in [pool.submit(lane.tool.start, lane.tree, tag) for lane, tag in starts]:
                f.result()
        for tree in trees:
            wait_converged(tree.src, tree.mirror, timeout=120)
        t_zero = time.monotonic() + 0.5
        # Daemon threads: a SIGINT in the main thread must not wait for polling lanes.
        threads = [threading.Thread(target=lane.run, args=(t_zero, repeats, timeout),
                                    daemon=True) for lane, _ in starts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out = {}
        for nfiles, (_, _, tree_lanes) in per_tree.items():
            errors = [lane.error for lane in tree_lanes if lane.error]
            if errors:
                out[nfiles] = {"error": errors[0]}
            else:
                lat = [s for lane in tree_lanes for s in lane.samples]
                out[nfiles] = latency_result(lat, f"n={len(lat)}" + (
                    f" in {lanes} parallel lanes" if lanes > 1 else ""))
        return out
    except (ToolError, TimeoutError, OSError) as e:
        return {tree.nfiles: {"error": f"lanes: {e}"} for tree in trees}
    finally:
        for nfiles, (proxy, daemon, tree_lanes) in per_tree.items():
            for lane in tree_lanes:
                lane.tool.stop()
                for root in (lane.tree.src, lane.tree.mirror):
                    shutil.rmtree(os.path.join(root, lane.d), ignore_errors=True)
            daemon.stop()
            proxy.close()
