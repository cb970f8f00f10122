"""Scene-anchored positions: each chunk step's position as an offset from the tool *or* from a scene point.

Without it the head says every future position as an offset from the tool's current position, so a
grasp 30 mm away must come out of the MLP as "30.0 mm that way", to better than a millimetre, from
features that only encode where the block is: peg_transfer told the block's centre still closed its
jaws 0.1-2.3 mm off it, and the block slips out beyond ~1.5 mm (policies/vla/README.md, "peg_transfer:
the grasp window").  With `SurgVLAConfig.scene_anchored` the head also gives, per step, an offset from
each of the scene summary's points (grasp point, place point) and a weight for each of the three
anchors (the tool, the grasp point, the place point; a softmax):

    position_t = sum_k w_tk * (anchor_k + offset_tk)

so "close the jaws 1 mm above the block's centre" is a near-constant offset from the grasp point
that no longer depends on how far away the block is, and the weights learn which anchor each step
of a task's motion follows (transporter- and keypoint-relative action heads work the same way).
Rotation and jaw stay offsets from the tool's state.  All in normalised action units: the scene's
positions are normalised like the actions' (`SurgVLAPolicy.normalised_scene`), so the anchors are
points in the actions' own space.  The output is still the absolute pose of contract section 7.
"""

from __future__ import annotations

import torch
from torch import Tensor

from surgbot.policies.vla.configuration_surgvla import POSE_DIM, SCENE_POSITIONS

POSITION_DIM = 3
ANCHORS = 1 + len(SCENE_POSITIONS)                  # the tool, then the scene's points in SCENE_POSITIONS order
# a step's outputs: the tool-relative pose offsets, an offset from each scene point, a weight logit per anchor
ANCHORED_STEP_DIM = POSE_DIM + POSITION_DIM * len(SCENE_POSITIONS) + ANCHORS


def step_dim(scene_anchored: bool) -> int:
    """Outputs per chunk step of the head."""
    return ANCHORED_STEP_DIM if scene_anchored else POSE_DIM


def anchored_chunk(raw: Tensor, state_as_action: Tensor, scene: Tensor) -> tuple[Tensor, Tensor]:
    """raw [B, H, ANCHORED_STEP_DIM] head outputs, state_as_action [B, 10] and scene [B, >= 8] (positions
    normalised like the actions) -> (chunk [B, H, 10] normalised actions, anchor weights [B, H, ANCHORS])."""
    if raw.shape[-1] != ANCHORED_STEP_DIM:
        raise ValueError(f"anchored head outputs must have {ANCHORED_STEP_DIM} per step, got {raw.shape[-1]}")
    chunk = state_as_action[:, None, :] + raw[..., :POSE_DIM]
    offsets = raw[..., POSE_DIM:POSE_DIM + POSITION_DIM * len(SCENE_POSITIONS)]
    weights = torch.softmax(raw[..., -ANCHORS:], dim=-1)
    points = [chunk[..., :POSITION_DIM]]              # anchor 0: the tool, its offset already added
    for i, (lo, hi) in enumerate(SCENE_POSITIONS):
        points.append(scene[:, None, lo:hi] + offsets[..., POSITION_DIM * i:POSITION_DIM * (i + 1)])
    position = (torch.stack(points, dim=-2) * weights[..., None]).sum(dim=-2)
    return torch.cat([position, chunk[..., POSITION_DIM:]], dim=-1), weights
