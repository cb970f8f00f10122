"""`surgbot bench [--quick] [--json] [--only AREA] [--out DIR] [--report]`.

Runs every module in `surgbot.bench.MODULES`, prints one progress line per area to
stderr, a table to stdout, and as the last stdout line (with `--json`) one
JSON object: `{"machine": {...}, "figures": {name: {...}}, "errors": {...}}`.
`--out DIR` also writes `DIR/bench.json`; `--report` regenerates
`docs/performance.md` and its PNG plots from that JSON.  With `--only`,
`--report` merges: the areas run replace theirs in `docs/performance.json`,
the other areas keep the figures of their own run, and the report's note
says which areas were rerun when (`merged`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from surgbot.bench import MODULES, machine
from surgbot.bench.report import fmt_number as _fmt
from surgbot.errors import CliError
from surgbot.processes import exit_skipping_finalisation, forbid_realtime_scheduling

REPO = Path(__file__).resolve().parents[1]


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="short runs (smoke check, < 2 min)")
    parser.add_argument("--json", action="store_true", help="last stdout line is one JSON object")
    parser.add_argument("--only", action="append", default=[], metavar="AREA",
                        help=f"run only this area ({', '.join(area_of(m) for m in MODULES)}); repeatable; "
                             "with --report the areas run replace theirs in docs/performance.json")
    parser.add_argument("--out", default=None, metavar="DIR", help="write DIR/bench.json")
    parser.add_argument("--report", action="store_true",
                        help="regenerate docs/performance.md + PNG plots from the results")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any area fails (make test: a benchmark that crashes is a defect); "
                             "without it only when every area fails")


def area_of(module_name: str) -> str:
    """`surgbot.bench.endoscope` -> `endoscope` (the name `--only` and the report use)."""
    return module_name.rsplit(".", 1)[1]


def run(args) -> int:
    areas = [area_of(m) for m in MODULES]
    for only in args.only:
        if only not in areas:
            raise CliError(f"unknown area {only!r}; known: {', '.join(areas)}")
    selected = [m for m in MODULES if not args.only or area_of(m) in args.only]
    selected_areas = [area_of(m) for m in selected]
    report_json = REPO / "docs" / "performance.json"
    previous = json.loads(report_json.read_text()) if args.report and args.only and report_json.exists() else None
    if previous is not None:      # refused before the run, not after it
        _check_same_mode(previous, bool(args.quick), selected_areas)

    result = {"machine": machine(), "quick": bool(args.quick), "figures": {}, "errors": {},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for i, module_name in enumerate(selected, 1):
        area = area_of(module_name)
        print(f"[{i}/{len(selected)}] bench {area} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        figures, error = _run_area(module_name, args.quick)
        if error:
            result["errors"][area] = error
            print(f"[{i}/{len(selected)}] bench {area}: FAILED: {error}", file=sys.stderr, flush=True)
            continue
        for fig in figures:
            fig["area"] = area
            result["figures"][fig["name"]] = fig
        print(f"[{i}/{len(selected)}] bench {area}: {len(figures)} figures in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    print(format_table(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(result, indent=1))
    if args.report:
        from surgbot.bench.report import write_report  # matplotlib: only with --report (CLI start-up)
        report = merged(result, previous, selected_areas) if args.only else result
        path = write_report(report, REPO / "docs")
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        slim = dict(result)
        slim["figures"] = {k: {kk: vv for kk, vv in v.items() if kk != "raw"}
                           for k, v in result["figures"].items()}
        print(json.dumps(slim))
    return 1 if result["errors"] and (args.strict or not result["figures"]) else 0


def merged(result: dict, previous: dict | None, areas: list[str]) -> dict:
    """The report of `--report --only AREA...`: `previous` (the report's JSON) with `areas` replaced by
    `result`'s figures and errors, the other areas' kept, in suite order; its note says what was rerun."""
    if previous is None:
        return result
    _check_same_mode(previous, bool(result["quick"]), areas)
    figures = {}
    for module_name in MODULES:
        area = area_of(module_name)
        source = result if area in areas else previous
        figures.update({n: f for n, f in source.get("figures", {}).items() if f.get("area") == area})
    errors = {a: e for a, e in previous.get("errors", {}).items() if a not in areas}
    errors.update(result["errors"])
    note = previous.get("note") or f"full run started {previous.get('started', '?')}"
    note += f"; {', '.join(areas)} rerun alone at {result['started']}"
    before = previous.get("machine") or {}
    changed = {k: v for k, v in result["machine"].items() if before.get(k) != v}
    if changed:                 # what differs from the machine of the report's own run
        note += " (machine then: " + ", ".join(f"{k} {v}" for k, v in changed.items()) + ")"
    return {**previous, "figures": figures, "errors": errors, "note": note}


def _check_same_mode(previous: dict, quick: bool, areas: list[str]) -> None:
    if bool(previous.get("quick")) != quick:
        mode = "quick" if previous.get("quick") else "full"
        raise CliError(f"docs/performance.json holds a {mode} run: merging a {'quick' if quick else 'full'} "
                       f"run of {', '.join(areas)} would mix the two; run every area, or the same mode")


def _run_area(module_name: str, quick: bool) -> tuple[list[dict], str | None]:
    """Run one area in its own process and read its figures back.

    Each area starts and stops DDS participants, twins and rclpy contexts; the
    unitree SDK's channel factory is one per process and its endpoints do not
    survive being torn down and rebuilt in the same process.  A crash in one
    area is reported as that area's error instead of ending the suite.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        proc = subprocess.run(
            [sys.executable, "-m", "surgbot.bench.runner", "--area", module_name, "--area-out", str(out)]
            + (["--quick"] if quick else []),
            cwd=REPO, stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0 or not out.exists():
            return [], f"{module_name} exited with code {proc.returncode}"
        data = json.loads(out.read_text())
        return data["figures"], data.get("error")


def _area_main(argv: list[str]) -> int:
    """`python -m surgbot.bench.runner --area surgbot.bench.X --area-out FILE [--quick]` (used by `run`)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--area", required=True, choices=MODULES)
    ap.add_argument("--area-out", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    try:
        module = importlib.import_module(a.area)
        if not getattr(module, "STARTS_REALTIME_NODES", False):
            forbid_realtime_scheduling()     # as every other surgbot process (surgbot/processes.py)
        figures, error = module.run(quick=a.quick), None
    except Exception as exc:  # reported as this area's error
        traceback.print_exc(file=sys.stderr)
        figures, error = [], f"{type(exc).__name__}: {exc}"
    Path(a.area_out).write_text(json.dumps({"figures": figures, "error": error}))
    return 0


def format_table(result: dict) -> str:
    rows = [("figure", "unit", "median/value", "p99", "max", "anchor", "ratio")]
    for name, f in result["figures"].items():
        rows.append((name, f.get("unit", ""), _fmt(f.get("median", f.get("value"))),
                     _fmt(f.get("p99")), _fmt(f.get("max")), _fmt(f.get("anchor")),
                     _fmt(f.get("ratio"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for area, err in result["errors"].items():
        lines.append(f"ERROR {area}: {err}")
    return "\n".join(lines)


if __name__ == "__main__":
    # the figures are written: DDS listener threads and rclpy contexts must not be finalised
    exit_skipping_finalisation(_area_main(sys.argv[1:]))
