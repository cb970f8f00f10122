"""Shared by the results page's sections and its reading: formatting of rates, intervals, costs, tables, and the
repeat-run comparison."""

from __future__ import annotations

NOT_RUN = "not run"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def success_text(r: dict | None) -> str:
    if r is None:
        return NOT_RUN
    lo, hi = r["wilson95"]
    return f"{r['successes']}/{r['episodes']} = {pct(r['success_rate'])} [{pct(lo)}, {pct(hi)}]"


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def minutes(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def cost_cells(r: dict | None) -> list[str]:
    if r is None:
        return ["-", "-", "-", "-"]
    tr, lat = r.get("training", {}), r.get("latency", {})
    params = tr.get("parameters")
    size = f"{params / 1e6:.2f} M" if params else "-"
    steps = f"{tr['steps']} x {tr['batch_size']}" if tr.get("steps") else "-"
    ms = lat.get("infer_ms_p50")
    return [f"{minutes(tr.get('wall_s'))} ({steps})", f"{size}, {mb(tr.get('checkpoint_bytes'))}",
            "-" if ms is None else f"{ms:.1f} / {lat.get('infer_ms_p99', 0):.1f} ms", r.get("evaluator", "-")]


def points(r: dict, base: dict) -> float:
    """Success-rate difference of `r` over `base`, in percentage points."""
    return 100 * (r["success_rate"] - base["success_rate"])


def intervals_overlap(a: dict, b: dict) -> bool:
    """The two cells' Wilson 95% intervals share some rate."""
    return not (a["wilson95"][0] > b["wilson95"][1] or b["wilson95"][0] > a["wilson95"][1])


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


COST_HEADER = ["training wall time (steps x batch)", "parameters, checkpoint", "inference p50 / p99",
               "evaluator"]


def compare_repeat(first: dict, again: dict) -> dict:
    """The repeat of a cell against its first run: is its rate inside the first run's Wilson interval, on how
    many seeds the two agree, and were the weights the same (the evaluation's checkpoint hash; None when a
    run did not record it)."""
    lo, hi = first["wilson95"]
    outcomes = {e["seed"]: e["success"] for e in first.get("per_episode") or []}
    same = sum(1 for e in again.get("per_episode") or [] if outcomes.get(e["seed"]) == e["success"])
    ids = [r.get("eval", {}).get("checkpoint_id") for r in (first, again)]
    return {"within": lo <= again["success_rate"] <= hi, "same_outcomes": same,
            "seeds": len(again.get("per_episode") or []), "same_weights": None if None in ids else ids[0] == ids[1]}
