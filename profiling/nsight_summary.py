#!/usr/bin/env python3
"""nsight_summary.py OUT_DIR: the parsed part of profiling/nsight.sh's summary. Prints it as text and writes it as
one line of JSON to OUT_DIR/nsight_summary.json (scripts/gpu_check.sh copies that into its own JSON).

Reads what nsight.sh left in OUT_DIR, each part only where its file exists:
  Nsight Systems  trinity_cuda_gpu_kern_sum.csv, trinity_nvtx_sum.csv (`nsys stats --format csv`; the older report
                  names gpukernsum and nvtxsum are taken too): the kernels by total GPU time and the NVTX ranges
                  (cuda/cuda_backend.cu's "decode step" and "prefill token");
  Nsight Compute  ncu_raw.csv (`ncu --import --page raw --csv`), else ncu_details.csv (`--page details --csv`): per
                  profiled launch its duration, DRAM throughput (% of peak), warp instructions executed and issued,
                  and the top warp stall reasons (cycles per issued instruction, from the WarpStateStats section; the
                  SourceCounters section's PC-sample shares where those are missing).
Standard library only. A file that does not parse is named in the text, never fatal."""
import csv
import glob
import json
import os
import re
import sys

TOP_KERNELS = 12
TOP_STALLS = 4
TIME_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "s": 1e9, "second": 1e9}
PREFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9}


def read_table(path, first_cell_pattern):
    """The rows of a CSV file from its header on: the first line whose first cell matches first_cell_pattern. Tool
    messages before it (==PROF==, "Generating SQLite file", "Processing [...]") are skipped."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        cells = next(csv.reader([line]), [])
        if cells and re.match(first_cell_pattern, cells[0].strip()):
            return [row for row in csv.reader(lines[i:]) if row]
    return []


def number(text):
    """A CSV cell as a float ("1,234.5" included); None for "", "n/a", "nan"."""
    try:
        value = float(str(text).replace(",", "").strip())
    except ValueError:
        return None
    return None if value != value else value


def scaled(value, unit):
    """A value in its unit as a plain count, a time in ns ("usecond" -> x1000, "Kinst" -> x1000)."""
    if value is None:
        return None
    unit = (unit or "").strip()
    if unit in TIME_NS:
        return value * TIME_NS[unit]
    m = re.match(r"^([kKMG]?)(inst|warp|byte|cycle|sector|request)", unit)
    return value * PREFIX[m.group(1)] if m else value


def column(header, *patterns):
    for pattern in patterns:
        for i, name in enumerate(header):
            if re.search(pattern, name.strip(), re.IGNORECASE):
                return i
    return None


def cell(row, i):
    return row[i] if i is not None and i < len(row) else ""


def short(name, width=90):
    return name if len(name) <= width else name[: width - 3] + "..."


def ns_text(ns):
    if ns is None:
        return "n/a"
    return "%.3f ms" % (ns / 1e6) if ns >= 1e6 else "%.2f us" % (ns / 1e3)


def find(out_dir, *names):
    for name in names:
        hits = sorted(glob.glob(os.path.join(out_dir, name)))
        if hits:
            return hits[0]
    return None


def nsys_kernels(path):
    """[{kernel, total_ns, percent, launches, average_ns}] by total time, from a cuda_gpu_kern_sum CSV."""
    rows = read_table(path, r"^Time ?\(%\)$")
    if len(rows) < 2:
        raise ValueError("no table")
    head = rows[0]
    c_pct, c_total = column(head, r"^Time ?\(%\)"), column(head, r"^Total Time")
    c_n, c_avg, c_name = column(head, r"^Instances", r"^Calls"), column(head, r"^Avg", r"^Average"), column(head, r"^Name$")
    if None in (c_total, c_n, c_name):
        raise ValueError("unknown columns: " + ", ".join(head))
    kernels = [{"kernel": cell(r, c_name), "total_ns": number(cell(r, c_total)), "percent": number(cell(r, c_pct)),
                "launches": number(cell(r, c_n)), "average_ns": number(cell(r, c_avg))}
               for r in rows[1:] if number(cell(r, c_total)) is not None]
    return sorted(kernels, key=lambda k: -k["total_ns"])


def nsys_ranges(path):
    """[{range, instances, average_ns, median_ns}] from an nvtx_sum CSV."""
    rows = read_table(path, r"^Time ?\(%\)$")
    if len(rows) < 2:
        raise ValueError("no table")
    head = rows[0]
    c_n, c_avg, c_med = column(head, r"^Instances"), column(head, r"^Avg", r"^Average"), column(head, r"^Med")
    c_name = column(head, r"^Range$", r"^Name$")
    if None in (c_n, c_avg, c_name):
        raise ValueError("unknown columns: " + ", ".join(head))
    return [{"range": cell(r, c_name).lstrip(":"), "instances": number(cell(r, c_n)),
             "average_ns": number(cell(r, c_avg)), "median_ns": number(cell(r, c_med))}
            for r in rows[1:] if number(cell(r, c_n)) is not None]


def ncu_raw(path):
    """[{id, kernel, grid, block, duration_ns, dram_percent, inst_executed, inst_issued, stalls, stall_unit}] from
    the raw page (one row per launch, one column per metric, the second row the units)."""
    rows = read_table(path, r"^ID$")
    if len(rows) < 3:
        raise ValueError("no profiled launch")
    head, units = rows[0], rows[1]
    c_id, c_name = column(head, r"^ID$"), column(head, r"^Kernel Name$", r"^Function Name$")
    c_grid, c_block = column(head, r"^Grid Size$"), column(head, r"^Block Size$")

    def metric(row, name):
        i = head.index(name) if name in head else None
        return scaled(number(cell(row, i)), cell(units, i)) if i is not None else None

    stall_unit = "cycles per issued instruction"
    stall_columns = [(i, m.group(1)) for i, h in enumerate(head)
                     for m in [re.match(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$", h)]
                     if m and m.group(1) != "selected"]  # "selected": the warp that issued, not a stall
    if not stall_columns:  # the SourceCounters section's PC samples instead, as shares of the stalled samples
        stall_unit = "share of the stalled PC samples"
        stall_columns = [(i, m.group(1)) for i, h in enumerate(head)
                         for m in [re.match(r"^smsp__pcsamp_warps_issue_stalled_(\w+)$", h)]
                         if m and not m.group(1).endswith("not_issued") and m.group(1) != "selected"]
    launches = []
    for r in rows[2:]:
        if number(cell(r, c_id)) is None:
            continue
        stalls = [(number(cell(r, i)), reason) for i, reason in stall_columns if number(cell(r, i)) is not None]
        total = sum(v for v, _ in stalls)
        if stall_unit.startswith("share") and total > 0:
            stalls = [(v / total, reason) for v, reason in stalls]
        top = sorted((s for s in stalls if s[0] > 0), reverse=True)[:TOP_STALLS]
        launches.append({"id": int(number(cell(r, c_id))), "kernel": cell(r, c_name), "grid": cell(r, c_grid),
                         "block": cell(r, c_block), "duration_ns": metric(r, "gpu__time_duration.sum"),
                         "dram_percent": metric(r, "dram__throughput.avg.pct_of_peak_sustained_elapsed"),
                         "inst_executed": metric(r, "smsp__inst_executed.sum"),
                         "inst_issued": metric(r, "smsp__inst_issued.sum"),
                         "stalls": {reason: round(v, 4) for v, reason in top}, "stall_unit": stall_unit})
    return launches


def ncu_details(path):
    """The same per launch from the details page (one row per section metric), where the raw page is missing; the
    stall reasons then come as the WarpStateStats rule's sentence."""
    rows = read_table(path, r"^ID$")
    if len(rows) < 2:
        raise ValueError("no profiled launch")
    head = rows[0]
    c_id, c_name = column(head, r"^ID$"), column(head, r"^Kernel Name$")
    c_grid, c_block = column(head, r"^Grid Size$"), column(head, r"^Block Size$")
    c_metric, c_unit, c_value = column(head, r"^Metric Name$"), column(head, r"^Metric Unit$"), column(head, r"^Metric Value$")
    c_rule, c_text = column(head, r"^Rule Name$"), column(head, r"^Rule Description$")
    if None in (c_id, c_metric, c_value):
        raise ValueError("unknown columns: " + ", ".join(head))
    by_id = {}
    for r in rows[1:]:
        if number(cell(r, c_id)) is None:
            continue
        e = by_id.setdefault(cell(r, c_id), {"kernel": cell(r, c_name), "grid": cell(r, c_grid),
                                             "block": cell(r, c_block), "metrics": {}, "rules": []})
        if cell(r, c_metric):
            e["metrics"][cell(r, c_metric)] = scaled(number(cell(r, c_value)), cell(r, c_unit))
        elif "Stall" in cell(r, c_rule) and cell(r, c_text):
            e["rules"].append(cell(r, c_text))
    return [{"id": int(number(i)), "kernel": e["kernel"], "grid": e["grid"], "block": e["block"],
             "duration_ns": e["metrics"].get("Duration"), "dram_percent": e["metrics"].get("DRAM Throughput"),
             "inst_executed": e["metrics"].get("Executed Instructions"),
             "inst_issued": e["metrics"].get("Issued Instructions"), "stalls": {}, "stall_unit": "",
             "stall_rule": e["rules"][0] if e["rules"] else ""} for i, e in by_id.items()]


def text_of(summary):
    lines = list(summary["problems"])
    kernels = summary.get("kernels")
    if kernels:
        total = sum(k["total_ns"] for k in kernels)
        lines.append("top kernels by GPU time (nsys; %d kinds, %s in all):" % (len(kernels), ns_text(total)))
        lines.append("  %6s %12s %9s %11s  %s" % ("time", "total", "launches", "average", "kernel"))
        for k in kernels[:TOP_KERNELS]:
            lines.append("  %5.1f%% %12s %9d %11s  %s" % (k["percent"] or 0.0, ns_text(k["total_ns"]),
                                                         int(k["launches"] or 0), ns_text(k["average_ns"]),
                                                         short(k["kernel"])))
        if len(kernels) > TOP_KERNELS:
            lines.append("  (%d more in %s)" % (len(kernels) - TOP_KERNELS, summary["kernels_file"]))
    if summary.get("ranges"):
        lines.append("NVTX ranges (nsys):")
        lines.append("  %9s %11s %11s  %s" % ("instances", "average", "median", "range"))
        for r in summary["ranges"]:
            lines.append("  %9d %11s %11s  %s" % (int(r["instances"] or 0), ns_text(r["average_ns"]),
                                                 ns_text(r["median_ns"]), short(r["range"])))
    launches = summary.get("launches")
    if launches is not None:
        lines.append("per profiled launch (ncu, %d launches):" % len(launches))
        for l in launches:
            def count(v):
                return "%.0f" % v if v is not None else "n/a"
            lines.append("  [%d] %s  grid %s block %s" % (l["id"], short(l["kernel"], 70), l["grid"] or "?",
                                                          l["block"] or "?"))
            lines.append("       duration %s, DRAM throughput %s of peak, warp instructions executed %s, issued %s" % (
                ns_text(l["duration_ns"]), "%.1f%%" % l["dram_percent"] if l["dram_percent"] is not None else "n/a",
                count(l["inst_executed"]), count(l["inst_issued"])))
            if l["stalls"]:
                share = l["stall_unit"].startswith("share")
                lines.append("       top stalls (%s): %s" % (l["stall_unit"], ", ".join(
                    ("%s %.0f%%" % (k, 100 * v)) if share else ("%s %.2f" % (k, v)) for k, v in l["stalls"].items())))
            elif l.get("stall_rule"):
                lines.append("       stalls: %s" % short(l["stall_rule"], 300))
            else:
                lines.append("       top stalls: n/a (no WarpStateStats metrics in the report)")
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: nsight_summary.py OUT_DIR")
    out_dir = sys.argv[1]
    summary = {"problems": []}
    parts = [("kernels", nsys_kernels, ("trinity_cuda_gpu_kern_sum.csv", "trinity_gpukernsum.csv", "*kern*sum*.csv")),
             ("ranges", nsys_ranges, ("trinity_nvtx_sum.csv", "trinity_nvtxsum.csv", "*nvtx*sum*.csv"))]
    parts += [("launches", ncu_raw, ("ncu_raw.csv",)), ("launches", ncu_details, ("ncu_details.csv",))]
    for key, parse, names in parts:
        path = find(out_dir, *names)
        if not path or key in summary:  # the details page only where the raw page gave nothing
            continue
        try:
            summary[key] = parse(path)
            summary[key + "_file"] = os.path.basename(path)
        except (OSError, csv.Error, ValueError, IndexError) as e:
            summary["problems"].append("could not read %s: %s" % (os.path.basename(path), e))
    print(text_of(summary))
    with open(os.path.join(out_dir, "nsight_summary.json"), "w") as f:
        json.dump(summary, f)
        f.write("\n")


if __name__ == "__main__":
    main()
