"""`surgbot data videos`: world-model clips (contract section 9), from `sim` or a `folder`.

    surgbot data videos --task T --episodes N --out DIR [--backend sim] [--seed 20000]
                        [--image-size 128x128] [--shift strong|none] [--no-first-state]
                        [--export-conditioning CDIR]
    surgbot data videos --backend folder --source SRC --out DIR [--task T] [--episodes N]

`sim` renders N successful episodes (seeds SEED, SEED+1, ...; the project
keeps world-model seeds in 20000-29999) and writes NAME.mp4 + NAME.json per
clip and the withheld truth to DIR/truth/ (measurements only).  `folder`
validates clips an external world model produced (fps 15, the image size,
>= MIN_FRAMES frames, a prompt, a known task) and copies them into DIR;
one bad clip -> one-line error and nothing written.  With
`--export-conditioning CDIR` the sim backend also writes, per episode, the
conditioning a video world model needs (conditioning.py), drawn from the
same episode rendered as the demos look.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.video.clips import (
    ClipError,
    ClipMeta,
    StagedFolder,
    finished_clip,
    list_clips,
    read_clip,
    write_clip,
)

WORLD_MODEL_SEED = 20000
MIN_FRAMES = 17                  # two frames k = 16 apart: the IDM's shortest window
MAX_ATTEMPTS_FACTOR = 3
MAX_ATTEMPTS_EXTRA = 5


@dataclass
class VideosResult:
    clips: int
    failed: int
    frames: int
    wall_s: float


def generate_sim(task: str, episodes: int, out: Path, seed: int = WORLD_MODEL_SEED, image_size=(128, 128),
                 shift: str = "strong", first_state: bool = True, conditioning: Path | None = None,
                 progress: bool = True) -> VideosResult:
    """`episodes` successful clips of `task` into `out` (staged: nothing left on error)."""
    from surgbot.policies.video.conditioning import write_conditioning
    from surgbot.policies.video.sim_source import SimVideoSource

    t0 = time.perf_counter()
    source = SimVideoSource(task, image_size=image_size, shift=shift)
    plain = SimVideoSource(task, image_size=image_size, shift="none", demo_style=False) if conditioning else None
    bar = tqdm(total=episodes, desc=f"videos {task}", unit="clip", disable=not progress, dynamic_ncols=True)
    kept = failed = frames = 0
    try:
        with contextlib.ExitStack() as stack:
            # a killed run's clips are kept when nothing that decides them differs (one clip per seed)
            key = None if conditioning else {"task": task, "seed": seed, "image_size": list(image_size),
                                             "shift": shift, "first_state": first_state}
            staged = StagedFolder(out, resume_key=key)
            work = stack.enter_context(staged)
            cond_work = stack.enter_context(StagedFolder(conditioning)) if conditioning else None
            attempt = 0
            while kept < episodes:
                if attempt >= MAX_ATTEMPTS_FACTOR * episodes + MAX_ATTEMPTS_EXTRA:
                    raise CliError(f"the expert failed too often ({failed} of {attempt}); nothing written")
                s = seed + attempt
                attempt += 1
                name = f"{task}_{s:06d}"
                done = finished_clip(work, name) if staged.resumed else None
                if done is not None:
                    kept += 1
                    frames += done
                    bar.update(1)
                    continue
                ep = source.episode(s)
                if not ep.success:
                    failed += 1
                    continue
                meta = ClipMeta(prompt=ep.prompt, task=task,
                                first_state=ep.first_state.tolist() if first_state else None,
                                extra={"seed": s, "source": f"sim world-model stand-in (shift {shift})"})
                truth = {"states": ep.states, "actions": ep.actions, "tip_px": ep.tip_px,
                         "appearance": json.dumps(ep.appearance), "style": json.dumps(ep.style)}
                write_clip(work, name, ep.frames, meta, truth)
                if cond_work is not None:
                    write_conditioning(cond_work, name, plain.episode(s, affordance=True))
                kept += 1
                frames += len(ep.frames)
                bar.update(1)
                bar.set_postfix(failed=failed)
    except ClipError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
        source.close()
        if plain is not None:
            plain.close()
    return VideosResult(clips=kept, failed=failed, frames=frames, wall_s=time.perf_counter() - t0)


def import_folder(src: Path, out: Path, tasks: tuple[str, ...], task: str | None, episodes: int | None,
                  image_size=(128, 128)) -> VideosResult:
    """Validate every clip of `src` (of `task` if given) and copy the first `episodes` into `out`."""
    t0 = time.perf_counter()
    try:
        mp4s = list_clips(src)
        chosen, frames = [], 0
        for mp4 in mp4s:
            clip = read_clip(mp4, tasks, image_size, MIN_FRAMES)
            if task is not None and clip.meta.task != task:
                continue
            chosen.append(mp4)
            frames += len(clip.frames)
            if episodes is not None and len(chosen) == episodes:
                break
        if not chosen:
            raise ClipError(f"{src}: no clip of task {task!r}")
        if episodes is not None and len(chosen) < episodes:
            raise ClipError(f"{src}: {len(chosen)} valid clip(s) of task {task!r}, asked for {episodes}")
        with StagedFolder(out) as work:
            for mp4 in chosen:
                shutil.copy2(mp4, work / mp4.name)
                shutil.copy2(mp4.with_suffix(".json"), work / mp4.with_suffix(".json").name)
    except ClipError as exc:
        raise CliError(str(exc)) from None
    return VideosResult(clips=len(chosen), failed=0, frames=frames, wall_s=time.perf_counter() - t0)
