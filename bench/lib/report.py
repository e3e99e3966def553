"""Markdown tables and the latency chart from the results dictionary.

results[scenario][size][tool] = {metric: value} | {"error": reason}
A syncfs cell that could not be measured reads "n/a (reason)"; a baseline's reads "FAILED".
The last column is syncfs's figure divided by the best baseline's (lower is better for every
metric here, so < 1 means syncfs wins).
"""
import os
import shutil
import subprocess

from scenarios import IDLE_CAP


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    return f"{s:.2f} s"


def fmt_bytes(b):
    if b is None:
        return "-"
    if b < 10 * 1024:
        return f"{b} B"
    if b < 10 * 1024 * 1024:
        return f"{b / 1024:.1f} KiB"
    return f"{b / 1024 / 1024:.1f} MiB"


def fmt_cpu(s):
    return "-" if s is None else f"{s:.2f} s"


def fmt_idle(s):
    return f"still busy (> {IDLE_CAP:.0f} s after convergence)" if s is None else fmt_time(s)


def fmt_ratio(s):
    return "-" if s is None else f"{s:.2f}x"


# scenario -> [(metric, heading, formatter)]
METRICS = {
    "latency": [("p50", "p50", fmt_time), ("p99", "p99", fmt_time)],
    "burst": [("writer", "writer time", fmt_time), ("writer_ratio", "writer / native", fmt_ratio),
              ("converge", "last write -> mirror complete", fmt_time),
              ("bytes", "bytes on the wire", fmt_bytes), ("cpu", "CPU (replicating processes)", fmt_cpu),
              ("idle", "last write -> tool idle", fmt_idle)],
    "rename": [("time", "time to converge", fmt_time), ("bytes", "bytes on the wire", fmt_bytes)],
    "bigfile": [("time", "time to converge", fmt_time), ("bytes", "bytes on the wire", fmt_bytes)],
    "sustained": [("p50", "lag p50", fmt_time), ("p99", "lag p99", fmt_time),
                  ("converged", "converged at the end", lambda v: "-" if v is None else ("yes" if v else "no")),
                  ("cpu", "CPU (replicating processes)", fmt_cpu), ("bytes", "bytes on the wire", fmt_bytes),
                  ("idle", "last op -> tool idle", fmt_idle)],
}

TITLES = {
    "latency": "Latency: one 4 KiB file written -> on the mirror with its content",
    "burst": "Burst: 10k files of 4 KiB written as fast as possible",
    "rename": "Rename of a directory holding 1000 files of 4 KiB",
    "bigfile": "4 KiB overwritten in the middle of a 1 GiB file",
    "sustained": "Sustained mixed workload (creates, appends, renames, deletes)",
}


def cell(res, metric, fmt, baseline):
    if res is None:
        return "-"
    if "error" in res:
        return ("FAILED: " if baseline else "n/a (") + res["error"].replace("|", "/")[:120] + \
            ("" if baseline else ")")
    if "note" in res and metric == "p50":
        return fmt(res.get(metric)) + f" ({res['note']})"
    return fmt(res.get(metric))


def ratio(row, tools, metric):
    s = row.get("syncfs")
    if not s or "error" in s or s.get(metric) is None or isinstance(s.get(metric), bool):
        return "-"
    best = [row[t.name][metric] for t in tools if t.baseline and row.get(t.name)
            and "error" not in row[t.name] and row[t.name].get(metric) is not None]
    best = [b for b in best if not isinstance(b, bool)]
    if not best or min(best) <= 0:
        return "-"
    return f"{s[metric] / min(best):.3f}"


def tables(results, tools, titles=None):
    titles = dict(TITLES, **(titles or {}))
    out = []
    for scen, metrics in METRICS.items():
        if scen not in results:
            continue
        out.append(f"### {titles[scen]}\n")
        head = ["tree", "metric"] + [t.label for t in tools] + ["syncfs / best baseline"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for size in sorted(results[scen]):
            row = results[scen][size]
            for metric, heading, fmt in metrics:
                cells = [f"{size // 1000}k files", heading]
                cells += [cell(row.get(t.name), metric, fmt, t.baseline)
                          if t.name in row else "not run" for t in tools]
                cells.append(ratio(row, tools, metric))
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def chart(results, tools, path, workdir):
    """Latency p50 (points+lines) and p99 (dashed) against tree size, log-log, via gnuplot."""
    if "latency" not in results or not shutil.which("gnuplot"):
        return "gnuplot not installed" if "latency" in results else "no latency results"
    series = []
    for t in tools:
        pts = []
        for size in sorted(results["latency"]):
            r = results["latency"][size].get(t.name)
            if r and "error" not in r:
                pts.append((size, r["p50"], r["p99"]))
        if pts:
            dat = os.path.join(workdir, f"lat-{t.name}.dat")
            with open(dat, "w") as f:
                for s, p50, p99 in pts:
                    f.write(f"{s} {p50 * 1000:.3f} {p99 * 1000:.3f}\n")
            series.append((t, dat))
    if not series:
        return "no latency figures"
    plots = []
    for i, (t, dat) in enumerate(series, 1):
        plots.append(f"'{dat}' using 1:2 with linespoints lw 2 pt 7 lc {i} title '{t.label} p50'")
        plots.append(f"'{dat}' using 1:3 with linespoints dt 2 pt 6 lc {i} title '{t.label} p99'")
    script = os.path.join(workdir, "latency.gp")
    with open(script, "w") as f:
        f.write("set terminal pngcairo size 1000,640 noenhanced font ',10'\n"
                f"set output '{path}'\n"
                "set title 'Replication latency: one 4 KiB file, write -> on the mirror'\n"
                "set logscale xy\nset xlabel 'files in the tree'\n"
                "set ylabel 'latency (ms, log scale)'\nset grid\n"
                "set key outside right top\n"
                "set xtics ('1k' 1000, '10k' 10000, '100k' 100000)\n"
                "set xrange [700:140000]\nset yrange [1:100000]\n"
                "set arrow from 700,50 to 140000,50 nohead dt 3 lc rgb 'gray40'\n"
                "set label 'target p50 50 ms' at 800,60 tc rgb 'gray40'\n"
                "set arrow from 700,200 to 140000,200 nohead dt 3 lc rgb 'gray40'\n"
                "set label 'target p99 200 ms' at 800,240 tc rgb 'gray40'\n"
                "plot " + ", \\\n     ".join(plots) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode != 0:
        return f"gnuplot failed: {r.stderr.strip()[:200]}"
    return None
