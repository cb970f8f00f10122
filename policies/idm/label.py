"""`surgbot idm label --videos DIR --idm CKPT --out DATASET`: pseudo-kinematics for world-model clips.

Per clip (NAME.mp4 + NAME.json, contract section 9; nothing else in the
folder is read - the `truth/` a simulated source leaves there is not):
1. every frame is encoded once (centre crop at the IDM's size);
2. the pose head estimates the pose at every frame; every window (t, t+k)
   gives k action offsets - first without a state, then again with the
   fused pose at t as the state (the IDM was trained both ways);
3. `fuse.py` solves one trajectory from all windows (anchored on the
   clip's `first_state` when given) and scores each frame by how well the
   overlapping windows agree;
4. frames below `--min-confidence` are dropped: the clip is cut into runs of
   kept frames, runs shorter than k frames are dropped too (and counted);
5. each run becomes an episode: state_t = x_t, action_t = x_{t+1}, the
   clip's frames and prompt, written with the recorder's own writer
   (`DatasetSession`, source `pseudo`), so the features, fps and image size
   are those of `surgbot data record` and `surgbot policy train` mixes the
   result with expert datasets.  meta/surgbot.json carries the IDM
   checkpoint (path and id), the threshold, per episode its clip, first
   frame and per-frame confidence, and the counts of dropped frames and
   episodes.

Every clip is validated before anything is written; any bad input is one
line and no output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.idm.configuration_idm import POSE_DIM
from surgbot.policies.idm.fuse import Fused, fuse, orthonormalise, segments
from surgbot.policies.idm.modeling_idm import IDMModel, checkpoint_id, load_idm
from surgbot.policies.idm.processor_idm import centre_crop, resize_frames, to_float
from surgbot.policies.video.clips import ClipError, clip_size, list_clips, read_clip

DEFAULT_MIN_CONFIDENCE = 0.5
ENCODE_BATCH = 64


@dataclass
class LabelResult:
    clips: int
    episodes: int
    frames: int
    frames_dropped: int
    episodes_dropped: int
    wall_s: float
    idm_s: float

    @property
    def frames_per_s(self) -> float:
        return (self.frames + self.frames_dropped) / self.idm_s if self.idm_s > 0 else 0.0


@torch.no_grad()
def label_clip(model: IDMModel, frames: np.ndarray, first_state: np.ndarray | None) -> Fused:
    """Fused trajectory and confidence of one clip (uint8 [T, H, W, 3])."""
    cfg, st = model.cfg, model.stats
    small = resize_frames(frames, cfg.load_size)
    imgs = centre_crop(to_float(torch.from_numpy(small)), cfg.image_size)
    feats = torch.cat([model.encode(imgs[i:i + ENCODE_BATCH]) for i in range(0, len(imgs), ENCODE_BATCH)])
    poses = st.unnorm_state(model.pose(feats)).numpy()
    n = len(frames) - cfg.k
    ts = torch.arange(n)
    fa, fb = feats[ts], feats[ts + cfg.k]
    anchor = None if first_state is None else np.asarray(first_state, np.float32)
    known = torch.zeros(n)
    state = torch.zeros(n, cfg.pose_dim)
    if anchor is not None:
        state[0], known[0] = torch.from_numpy(anchor), 1.0
    off = st.unnorm_delta(model.offsets(fa, fb, st.norm_state(state), known)).numpy()
    fused = fuse(poses, off, st.sigma_state, st.sigma_delta, anchor)
    if cfg.use_state:                      # second pass: every window with the fused pose as its state
        state = torch.from_numpy(fused.poses[:n])
        off = st.unnorm_delta(model.offsets(fa, fb, st.norm_state(state))).numpy()
        fused = fuse(poses, off, st.sigma_state, st.sigma_delta, anchor)
    return fused


def _load_model(ckpt: Path) -> IDMModel:
    try:
        return load_idm(ckpt, pose_dim=POSE_DIM)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _clips(videos: Path, k: int):
    """Validate every clip first (decoded in full, one at a time), then yield them again for labelling:
    a bad clip anywhere stops the run before anything is written, and only one clip is in memory."""
    from surgbot.sim.tasks import TASK_NAMES
    try:
        size = clip_size(videos)
        paths = list_clips(videos)
        metas = [read_clip(p, TASK_NAMES, size, k + 1).meta for p in paths]
    except ClipError as exc:
        raise CliError(str(exc)) from None

    def again():
        for p in paths:
            yield read_clip(p, TASK_NAMES, size, k + 1)
    return size, metas, again


def label(videos: Path, ckpt: Path, out: Path, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
          threads: int = 1, progress: bool = True) -> LabelResult:
    from surgbot.policies.data.dataset import DatasetSession, check_output

    if not 0.0 <= min_confidence <= 1.0:
        raise CliError(f"--min-confidence must be in [0, 1], got {min_confidence}")
    torch.set_num_threads(max(1, threads))
    t0 = time.perf_counter()
    model = _load_model(Path(ckpt))
    k = model.cfg.k
    (h, w), metas, clips = _clips(Path(videos), k)
    check_output(Path(out), False, h, w)
    ckpt_id = checkpoint_id(Path(ckpt))
    frames_kept = frames_dropped = episodes_dropped = written = 0
    idm_s = 0.0
    bar = tqdm(total=len(metas), desc="idm label", unit="clip", disable=not progress, dynamic_ncols=True)
    try:
        with DatasetSession(Path(out), append=False, height=h, width=w, task=metas[0].task,
                            source="pseudo") as session:
            tasks = set()
            for clip in clips():
                t1 = time.perf_counter()
                fused = label_clip(model, clip.frames, clip.first_state)
                idm_s += time.perf_counter() - t1
                poses = orthonormalise(fused.poses)
                keep = fused.confidence >= min_confidence          # action t for frames 0..T-2
                runs = segments(keep, k)
                kept_here = sum(b - a for a, b in runs)
                frames_dropped += len(clip.frames) - 1 - kept_here    # the last frame has no action: not counted
                if not runs:
                    episodes_dropped += 1
                session.task = clip.meta.task
                tasks.add(clip.meta.task)
                for a, b in runs:
                    rows = [{"image": clip.frames[t], "state": poses[t], "action": poses[t + 1],
                             "task": clip.meta.prompt} for t in range(a, b)]
                    session.add_episode(rows, {
                        "clip": clip.name, "prompt": clip.meta.prompt, "start_frame": a,
                        "first_state_given": clip.first_state is not None,
                        "confidence": [round(float(c), 4) for c in fused.confidence[a:b]],
                        "confidence_mean": float(fused.confidence[a:b].mean())})
                    frames_kept += b - a
                bar.update(1)
                bar.set_postfix(kept=frames_kept, dropped=frames_dropped)
            if session.kept == 0:
                raise CliError(f"every frame of the {len(metas)} clip(s) is below --min-confidence "
                               f"{min_confidence}; nothing written")
            written = session.kept
            session.meta.update({
                "tasks": sorted(tasks), "idm_checkpoint": {"path": str(Path(ckpt).resolve()), "id": ckpt_id,
                                                           "k": k},
                "min_confidence": min_confidence, "clips": len(metas), "frames_dropped": frames_dropped,
                "episodes_dropped": episodes_dropped, "videos": str(Path(videos).resolve()),
                "confidence": "per frame, in episodes[i].confidence: agreement of the overlapping IDM windows "
                              "(1 = within their held-out error)"})
    except KeyboardInterrupt:
        raise CliError(f"interrupted; {out} left as it was") from None
    finally:
        bar.close()
    return LabelResult(clips=len(metas), episodes=written, frames=frames_kept, frames_dropped=frames_dropped,
                       episodes_dropped=episodes_dropped,
                       wall_s=time.perf_counter() - t0, idm_s=idm_s)
