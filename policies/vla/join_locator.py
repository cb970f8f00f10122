"""Joining a scene locator to a bound checkpoint, and `surgbot policy join-locator`: reuse one already trained.

A bound (`policy train --scene-input`) has an action head that takes the simulator's scene summary;
joined with a locator it takes the locator's estimate from the episode's first image instead and needs
nothing from the simulator (`policy train-locator` trains the locator and joins it here).

`join-locator --bound NEW --locator-from JOINED` puts the locator of an already joined checkpoint onto
another bound: an action head retrained on the same datasets (another head, more steps) then does not
need the locator's 15 minutes again.  That is only the same locator if both bounds normalise alike: the
locator reads the image normalised by its bound's dataset stats and writes the summary in its action
units, so the two checkpoints' normalisers must hold identical stats, and the encoder's input (image
size, crop) and the locator's shape must match; otherwise a one-line error and nothing is written.

Several `--locator-from` put all their locators onto the bound, averaged at inference
(SurgVLAConfig.scene_locator_extra): they must agree in everything but their weights (glimpse, frame
size, glimpse scale, shape), each on the same normalisation.

`strip-locator --checkpoint JOINED` goes the other way: the bound inside a joined checkpoint (its action
head, taking the simulator's summary again), to measure that head with a perfect summary or to train
another locator for it (`train-locator --bound`) without retraining the head.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from surgbot.errors import CliError
from surgbot.policies.vla.configuration_locator import CHECKPOINT_SUBDIR, SUMMARY_FILE
from surgbot.policies.vla.configuration_surgvla import MAX_EXTRA_LOCATORS, SCENE_DIM
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy

# the checkpoint's files the joined one does not copy from its bound (it writes its own)
OWN_FILES = ("config.json", "model.safetensors", "train_config.json")
# the bundled checkpoint keeps the locator stage's train_summary.json under this name
LOCATOR_SUMMARY_FILE = "locator_summary.json"
# config fields that decide what the locator's encoder is given (its weights' shapes are checked on loading)
ENCODER_INPUT_FIELDS = ("image_size", "crop")
# config fields every locator of one joined checkpoint shares (what it reads and how)
LOCATOR_SHAPE_FIELDS = ("scene_locator_glimpse_px", "frame_size", "scene_locator_glimpse_scale")
LOCATOR_PREFIXES = ("model.scene_locator.", "model.scene_locator_extra.")


def check_bound(runtime, out: Path, glimpse_px: int) -> None:
    cfg = runtime.config
    if cfg.scene_dim != SCENE_DIM:
        raise CliError(f"{runtime.path}: not trained with --scene-input (scene_dim {cfg.scene_dim}); the locator "
                       "joins an action head that takes the scene summary")
    if cfg.scene_locator:
        raise CliError(f"{runtime.path}: already has a scene locator")
    if glimpse_px > min(cfg.image_size):
        raise CliError(f"--glimpse-px {glimpse_px} is larger than the image the encoder sees ({cfg.image_size})")
    _check_unfinished(out)


def _check_unfinished(out: Path) -> None:
    if (out / SUMMARY_FILE).exists():
        raise CliError(f"{out / SUMMARY_FILE} exists: a finished run (another --out, or delete it)")


def _copy_processors(src: Path, dest: Path, skip: tuple[str, ...]) -> None:
    """The checkpoint's processors (normalisation, language) from `src` to `dest`, all but `skip`."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in skip:
            shutil.copy(f, dest / f.name)


def _is_locator_key(key: str) -> bool:
    return key.startswith(LOCATOR_PREFIXES)


def join(runtime, members: list[dict], dest: Path, glimpse_px: int, frame_size=None,
         glimpse_scale: float = 1.0) -> None:
    """Save the bound `runtime` with its locators (weights already mapping to the summary; more than one:
    averaged) in it at `dest`; `frame_size`, `glimpse_scale`: SurgVLAConfig.frame_size,
    scene_locator_glimpse_scale of the result."""
    _copy_processors(Path(runtime.path), dest, OWN_FILES)
    cfg = runtime.config
    cfg.scene_locator = True
    cfg.scene_locator_extra = len(members) - 1
    cfg.scene_locator_glimpse_px = glimpse_px
    cfg.frame_size = None if frame_size is None else tuple(frame_size)
    cfg.scene_locator_glimpse_scale = float(glimpse_scale)
    joined = SurgVLAPolicy(cfg)
    missing, unexpected = joined.load_state_dict(runtime.policy.state_dict(), strict=False)
    if unexpected or not all(_is_locator_key(k) for k in missing):
        raise RuntimeError(f"joining: unexpected {unexpected}, missing {missing}")
    for module, weights in zip(joined.model.locators(), members, strict=True):
        module.load_state_dict(weights)
    joined.save_pretrained(dest)


def _normaliser_stats(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    stats = {}
    for f in sorted(path.glob("policy_*processor*.safetensors")):
        stats.update({f"{f.name.split('_step_')[0]}/{k}": v for k, v in load_file(f).items()})
    return stats


def check_same_normalisation(bound, source) -> None:
    """CliError unless `source`'s locator sees and writes what it would on `bound` (module docstring)."""
    for name in ENCODER_INPUT_FIELDS:
        a, b = getattr(bound.config, name), getattr(source.config, name)
        if (None if a is None else tuple(a)) != (None if b is None else tuple(b)):
            raise CliError(f"--locator-from {source.path}: {name} {b} differs from the bound's {a}")
    ours, theirs = _normaliser_stats(Path(bound.path)), _normaliser_stats(Path(source.path))
    if not ours or ours.keys() != theirs.keys() or any(not torch.equal(ours[k], theirs[k]) for k in ours):
        raise CliError(f"--locator-from {source.path}: its normalisation stats differ from {bound.path}'s (the "
                       "locator reads images and writes the summary in its bound's units): train a locator "
                       "for this bound with `policy train-locator`")
    for buf in ("action_mean", "action_std"):
        if not torch.equal(getattr(bound.policy, buf), getattr(source.policy, buf)):
            raise CliError(f"--locator-from {source.path}: its {buf} differs from {bound.path}'s")


def _shape(cfg) -> tuple:
    return tuple(tuple(v) if isinstance(v, list | tuple) else v for v in
                 (getattr(cfg, name) for name in LOCATOR_SHAPE_FIELDS))


def _locator_training(src_path: Path) -> dict | None:
    """How a reused locator was trained, where known: the bundled checkpoint's copy, or the summary of the
    train-locator output folder the checkpoint sits in (OUT/checkpoints/last/pretrained_model)."""
    stage = src_path.parents[2] / SUMMARY_FILE if len(src_path.parents) > 2 else None
    for f in (src_path / LOCATOR_SUMMARY_FILE, stage):
        if f is not None and f.is_file():
            return json.loads(f.read_text())
    return None


def join_from(bound: str | Path, sources: str | Path | list, out: Path) -> dict:
    """`join-locator`: OUT/checkpoints/last/pretrained_model and OUT/train_summary.json; returns the summary.
    Several sources: all their locators, averaged (module doc)."""
    from surgbot.policies.vla.runtime import CheckpointError, PolicyRuntime

    t0 = time.time()
    out = Path(out)
    sources = list(sources) if isinstance(sources, list | tuple) else [sources]
    try:
        rt, srcs = PolicyRuntime(bound), [PolicyRuntime(s) for s in sources]
    except CheckpointError as exc:
        raise CliError(str(exc)) from exc
    for src in srcs:
        if not src.config.scene_locator:
            raise CliError(f"--locator-from {src.path}: has no scene locator")
        if _shape(src.config) != _shape(srcs[0].config):
            raise CliError(f"--locator-from {src.path}: its locator reads frames unlike {srcs[0].path}'s "
                           f"({', '.join(LOCATOR_SHAPE_FIELDS)}: {_shape(src.config)} against "
                           f"{_shape(srcs[0].config)})")
    glimpse_px = int(srcs[0].config.scene_locator_glimpse_px)
    check_bound(rt, out, glimpse_px)
    members = []
    for src in srcs:
        check_same_normalisation(rt, src)
        members += [m.state_dict() for m in src.policy.model.locators()]
    if len(members) > 1 + MAX_EXTRA_LOCATORS:
        raise CliError(f"{len(members)} locators: at most {1 + MAX_EXTRA_LOCATORS} are averaged")
    try:
        join(rt, members, out / CHECKPOINT_SUBDIR, glimpse_px, srcs[0].config.frame_size,
             srcs[0].config.scene_locator_glimpse_scale)
    except RuntimeError as exc:        # a locator of another shape (keypoints, channels, glimpse)
        raise CliError(f"--locator-from: a locator does not fit {rt.path}: {str(exc).splitlines()[0]}") from exc
    summary = {"bound": str(rt.path), "locator_from": str(srcs[0].path), "checkpoint": str(CHECKPOINT_SUBDIR),
               "locators": len(members), "wall_s": time.time() - t0}
    trained = [_locator_training(Path(src.path).resolve()) for src in srcs]
    if trained[0] is not None:
        summary["locator_training"] = trained[0]
    if len(srcs) > 1:
        summary["locators_from"] = [{"path": str(src.path), "locator_training": t} for src, t in
                                    zip(srcs, trained, strict=True)]
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def strip(source: str | Path, out: Path) -> dict:
    """`strip-locator`: the bound inside the joined checkpoint `source` (same head and processors, no
    locator) at OUT/checkpoints/last/pretrained_model, OUT/train_summary.json; returns the summary."""
    from surgbot.policies.vla.runtime import CheckpointError, PolicyRuntime

    t0 = time.time()
    out = Path(out)
    try:
        src = PolicyRuntime(source)
    except CheckpointError as exc:
        raise CliError(str(exc)) from exc
    if not src.config.scene_locator:
        raise CliError(f"{src.path}: has no scene locator (already a bound, or trained without --scene-input)")
    _check_unfinished(out)
    dest = out / CHECKPOINT_SUBDIR
    _copy_processors(Path(src.path), dest, OWN_FILES + (LOCATOR_SUMMARY_FILE,))
    cfg = src.config
    cfg.scene_locator, cfg.scene_locator_glimpse_px, cfg.scene_locator_average_px = False, 0, 0
    cfg.frame_size, cfg.scene_locator_glimpse_scale, cfg.scene_locator_extra = None, 1.0, 0
    bound = SurgVLAPolicy(cfg)
    head = {k: v for k, v in src.policy.state_dict().items() if not _is_locator_key(k)}
    bound.load_state_dict(head, strict=True)
    bound.save_pretrained(dest)
    summary = {"stripped_from": str(src.path), "checkpoint": str(CHECKPOINT_SUBDIR), "wall_s": time.time() - t0}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary
