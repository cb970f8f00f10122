"""Run one results cell (policies/results/cells.py): datasets -> training -> latency -> evaluation -> JSON.

Every stage is skipped when its output is complete, so a stopped cell resumes:
a dataset is complete when its commands all succeeded (a `.KEY.done` marker
beside it; a half-built one is deleted and rebuilt); a training when its
`checkpoints/last` reached the planned step (else LeRobot's own resume
continues it from the last saved checkpoint).  Training wall time is summed
over the runs that built the checkpoint (`out/results/state/train-KEY.json`),
each recorded when it starts, so a run that was killed still counts (until its
log's last line).
Child commands run with one torch/OpenMP thread at the caller's niceness;
their output goes to the cell's log (`out/results/logs/CELL.log`).  The cell
JSON (`docs/results/CELL.json`) is written only when the evaluation finished.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from surgbot.policies.results import cells as C
from surgbot.policies.results.stats import wilson_interval

CHILD_ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa", "PYTHONUNBUFFERED": "1", "SVT_LOG": "1"}
HARNESS_MODULE = "surgbot.policies.evaluation.harness"


def trained_by_other_commands(runs: list[dict], tr: C.Training) -> bool:
    """True when the first recorded run in `tr`'s folder used another recipe than `tr`'s.

    A first run killed before runs were recorded at their start (state files
    written before 2026-12-03) left no record: then the run that resumed it is
    the first one recorded, with the resume command, the same recipe.
    """
    if not runs:
        return False
    return runs[0]["command"] not in (" ".join(tr.command), " ".join(tr.resume_command))


def settle_killed_runs(runs: list[dict], step_now: int) -> None:
    """Runs recorded at their start that never ended (killed, the machine stopped): their wall time runs
    to the last line of their log, and they got as far as the checkpoint the next run starts from."""
    for run in runs:
        if run.get("wall_s") is None:
            log = Path(run["log"])
            end = log.stat().st_mtime if log.is_file() else run["started_unix"]
            run.update(wall_s=round(max(0.0, end - run["started_unix"]), 1), to_step=step_now, killed=True)


def runs_wall_s(runs: list[dict]) -> float:
    """Wall time of the runs so far (one still going: until now)."""
    return sum(r["wall_s"] if r.get("wall_s") is not None else time.time() - r["started_unix"] for r in runs)


class CellError(RuntimeError):
    """A stage failed or cannot run yet; the message says which and why (one line)."""


def cell_file(name: str) -> str:
    return name.replace("/", "_")


def json_path(root: Path, name: str) -> Path:
    return root / C.DOCS / f"{cell_file(name)}.json"


def log_path(root: Path, name: str) -> Path:
    return root / C.WORK / "logs" / f"{cell_file(name)}.log"


def pid_path(root: Path, name: str) -> Path:
    return root / C.WORK / "state" / f"{cell_file(name)}.pid"


def executable(argv: tuple[str, ...]) -> list[str]:
    """The documented command with its program resolved in this interpreter's environment."""
    head, rest = argv[0], list(argv[1:])
    if head == "python":
        return [sys.executable, *rest]
    if head in ("surgbot", "lerobot-train"):
        return [str(Path(sys.executable).with_name(head)), *rest]
    return [head, *rest]


def harness_installed() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(HARNESS_MODULE) is not None
    except ModuleNotFoundError:
        return False


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise CellError("no JSON line in the command's output")


def git_commit(root: Path) -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def trained_step(out: Path) -> int:
    f = out / "checkpoints" / "last" / "training_state" / "training_step.json"
    try:
        return int(json.loads(f.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


class CellRunner:
    def __init__(self, cell: C.Cell, root: Path = Path("."), echo=print):
        self.cell = cell
        self.root = Path(root).resolve()
        self.echo = echo
        self.log = log_path(self.root, cell.name)
        self.evaluator = "harness" if harness_installed() else "interim"

    # ------------------------------------------------------------ plumbing
    def say(self, text: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        line = f"[{stamp}] {self.cell.name}: {text}"
        self.echo(line)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as f:
            f.write(line + "\n")

    def sh(self, argv: tuple[str, ...], capture_to: Path | None = None) -> str:
        """Run one documented command from the repository root; its output to the log (and returned)."""
        self.say("$ " + " ".join(argv))
        env = {**os.environ, **CHILD_ENV}
        with open(self.log, "a") as log:
            proc = subprocess.Popen(executable(argv), cwd=self.root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            lines = []
            extra = open(capture_to, "a") if capture_to else None
            try:
                for line in proc.stdout:
                    lines.append(line)
                    log.write(line)
                    log.flush()
                    if extra:
                        extra.write(line)
            finally:
                if extra:
                    extra.close()
            rc = proc.wait()
        if rc != 0:
            tail = "".join(lines[-5:]).strip().splitlines()
            raise CellError(f"command failed (exit {rc}): {' '.join(argv[:4])} ...: {tail[-1] if tail else ''}")
        return "".join(lines)

    def blocked(self) -> str | None:
        """Why this cell cannot run with the code installed now (None: it can)."""
        from surgbot.cli import SUBCOMMANDS
        for ds in self.cell.datasets():
            if ds.kind in ("idm", "clips") and not self._done(ds):
                if ds.kind == "idm" and "idm" not in SUBCOMMANDS:
                    return "`surgbot idm` is not installed yet (the IDM issue)"
                if ds.kind == "clips" and not self._has_option(("surgbot", "data", "videos"), "--backend"):
                    return "`surgbot data videos` is not installed yet (the world-model issue)"
        if self.cell.eval_options:
            if self.evaluator != "harness":
                return "needs `surgbot policy eval` (the evaluation harness is not installed yet)"
            for opt in self.cell.eval_options[::2]:
                if not self._has_option(("surgbot", "policy", "eval"), opt):
                    return f"`surgbot policy eval` has no {opt} option yet"
        if self.cell.training.policy == "bundled":
            from surgbot.policies.vla.runtime import CheckpointError, resolve_checkpoint
            try:
                resolve_checkpoint("default")
            except CheckpointError as exc:
                return str(exc)
        return None

    def _has_option(self, argv: tuple[str, ...], option: str) -> bool:
        proc = subprocess.run(executable(argv) + ["--help"], capture_output=True, text=True, cwd=self.root,
                              env={**os.environ, **CHILD_ENV}, timeout=120)
        return proc.returncode == 0 and option in proc.stdout

    # ------------------------------------------------------------ datasets
    def _marker(self, ds: C.Dataset) -> Path:
        return self.root / ds.path.parent / f".{ds.key}.done"

    def _done(self, ds: C.Dataset) -> bool:
        """Built by its current commands (a dataset recorded by other commands, e.g. another image size, is
        rebuilt rather than silently reused)."""
        marker = self._marker(ds)
        if not (marker.is_file() and (self.root / ds.path).exists()):
            return False
        try:
            built = json.loads(marker.read_text()).get("commands")
        except (OSError, ValueError):
            return False
        return built == [" ".join(a) for a in ds.commands]

    def build_dataset(self, ds: C.Dataset) -> dict:
        marker = self._marker(ds)
        if self._done(ds):
            self.say(f"dataset {ds.key}: complete, skipped")
            return json.loads(marker.read_text())
        path = self.root / ds.path
        if path.exists():
            self.say(f"dataset {ds.key}: incomplete, rebuilding")
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for argv in ds.commands:
            self.sh(argv)
        info = {"key": ds.key, "commands": [" ".join(a) for a in ds.commands], "episodes": ds.episodes,
                "wall_s": round(time.perf_counter() - t0, 1), "bytes": dir_bytes(path)}
        marker.write_text(json.dumps(info))
        return info

    # ------------------------------------------------------------ training
    def train(self) -> dict:
        tr = self.cell.training
        if tr.policy == "bundled":
            from surgbot.policies.vla.runtime import resolve_checkpoint
            ckpt = resolve_checkpoint("default")
            return {"key": tr.key, "policy": "surgvla (bundled checkpoint)", "checkpoint": str(ckpt),
                    "checkpoint_bytes": dir_bytes(ckpt), "parameters": count_parameters(ckpt)}
        out = self.root / tr.out
        state_file = self.root / C.WORK / "state" / f"train-{tr.key}.json"
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state = json.loads(state_file.read_text()) if state_file.is_file() else {"runs": []}
        if trained_by_other_commands(state["runs"], tr):
            # trained by other commands (another recipe or dataset): start again, never mix the two
            self.say(f"training {tr.key}: built by other commands, retraining from scratch")
            shutil.rmtree(out, ignore_errors=True)
            state = {"runs": []}
        step = trained_step(out)
        settle_killed_runs(state["runs"], step)
        if step >= tr.steps:
            self.say(f"training {tr.key}: complete at step {step}, skipped")
        else:
            resume = step > 0 and bool(tr.resume_command)
            if out.exists() and not resume:
                shutil.rmtree(out)
                state = {"runs": []}
            argv = tr.resume_command if resume else tr.command
            run_log = self.root / C.WORK / "state" / f"train-{tr.key}.run{len(state['runs'])}.log"
            self.say(f"training {tr.key}: {'resuming at step ' + str(step) if resume else 'from scratch'} "
                     f"to {tr.steps} steps")
            run = {"command": " ".join(argv), "wall_s": None, "started_unix": round(time.time(), 1),
                   "from_step": step, "to_step": None, "log": str(run_log)}
            state["runs"].append(run)
            state_file.write_text(json.dumps(state, indent=1))       # recorded now: a killed run still counts
            t0 = time.perf_counter()
            try:
                self.sh(argv, capture_to=run_log)
            finally:
                run.update(wall_s=round(time.perf_counter() - t0, 1), to_step=trained_step(out))
                state_file.write_text(json.dumps(state, indent=1))
        ckpt = out / "checkpoints" / "last" / "pretrained_model"
        if trained_step(out) < tr.steps or not (ckpt / "model.safetensors").is_file():
            raise CellError(f"training {tr.key} ended at step {trained_step(out)} of {tr.steps}")
        return {"key": tr.key, "policy": tr.policy, "command": " ".join(tr.command), "steps": tr.steps,
                "batch_size": tr.batch_size, "wall_s": round(runs_wall_s(state["runs"]), 1),
                "runs": state["runs"], "checkpoint": str(ckpt.relative_to(self.root)),
                "checkpoint_bytes": dir_bytes(ckpt), "parameters": count_parameters(ckpt),
                "curve": loss_curve(tr, out, state["runs"], self.root)}

    # ------------------------------------------------------------ all
    def run(self) -> dict:
        why = self.blocked()
        if why:
            raise CellError(f"cannot run yet: {why}")
        t0 = time.perf_counter()
        self.say(f"start (evaluator: {self.evaluator})")
        datasets = [self.build_dataset(ds) for ds in self.cell.datasets()]
        training = self.train()
        self.say("latency")
        latency = last_json_line(self.sh(self.cell.latency_command()))
        self.say(f"evaluation: {C.EVAL_EPISODES} episodes from seed {C.EVAL_SEED}")
        ev = last_json_line(self.sh(self.cell.eval_command(self.evaluator)))
        episodes = int(ev["episodes"])
        successes = int(ev.get("successes", round(float(ev["success_rate"]) * episodes)))
        lo, hi = wilson_interval(successes, episodes)
        result = {
            "cell": self.cell.name, "section": self.cell.section, "task": self.cell.task,
            "variables": self.cell.variables, "note": self.cell.note, "evaluator": self.evaluator,
            "commands": [" ".join(a) for a in self.cell.commands(self.evaluator)],
            "datasets": datasets, "training": training, "latency": latency,
            "eval": {k: v for k, v in ev.items() if k not in ("per_episode", "results")},
            "per_episode": ev.get("per_episode") or ev.get("results"),
            "successes": successes, "episodes": episodes, "success_rate": successes / episodes,
            "wilson95": [round(lo, 4), round(hi, 4)],
            "cell_wall_s": round(time.perf_counter() - t0, 1),
            "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(self.root), "cpu": f"{os.cpu_count()} cores (shared)",
        }
        out = json_path(self.root, self.cell.name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        self.say(f"done: {successes}/{episodes} [{lo:.2f}, {hi:.2f}] -> {out.relative_to(self.root)}")
        return result


def count_parameters(ckpt: Path) -> int | None:
    from safetensors import safe_open
    f = ckpt / "model.safetensors"
    if not f.is_file():
        return None
    total = 0
    with safe_open(str(f), framework="pt") as st:
        for k in st.keys():
            n = 1
            for d in st.get_slice(k).get_shape():
                n *= int(d)
            total += n
    return total


def loss_curve(tr: C.Training, out: Path, runs: list[dict], root: Path) -> list[list[float]]:
    """[[step, loss], ...] from the training's own log."""
    pts: list[list[float]] = []
    if tr.policy == "surgvla":
        f = out / "train_log.jsonl"
        if f.is_file():
            for line in f.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    pts.append([int(row["step"]), float(row["loss"])])
        return pts
    for run in runs:   # lerobot-train logs "step:1K ... loss:0.539" every log_freq steps
        step = int(run["from_step"])
        log = root / run["log"] if not Path(run["log"]).is_absolute() else Path(run["log"])
        if not log.is_file():
            continue
        for line in log.read_text().splitlines():
            if " loss:" in line and "step:" in line:
                step += C.LEROBOT_LOG_FREQ
                try:
                    pts.append([step, float(line.split(" loss:")[1].split()[0])])
                except (IndexError, ValueError):
                    continue
    return pts
