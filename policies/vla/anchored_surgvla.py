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
The jaw stays an offset from the tool's state.  All in normalised action units: the scene's
positions are normalised like the actions' (`SurgVLAPolicy.normalised_scene`), so the anchors are
points in the actions' own space.  The output is still the absolute pose of contract section 7.

Rotation (`SurgVLAConfig.scene_anchored_yaw`): the summary says how the object lies as (cos k*yaw,
sin k*yaw) about the world's vertical, while the rotation is regressed in the tilted PSM1_base frame
as an offset from the tool's; told the block's yaw, the tail-bound head still closed its jaws 1.5-35
deg from the block's faces (the expert: 0.2 deg).  So the rotation also gets anchors: for each of the
symmetries in YAW_SYMMETRIES (the block's 4, the needle's 2; the summary does not say which object
it is, the instruction does, and the weights are the head's) the jaws-down rotation at the object's
yaw turned by the multiple of 360/k deg nearest the tool's current yaw (as the experts pick it), in
the actions' frame: `yaw_anchors`, from the world's x and y axes in that frame
(`SurgVLAConfig.scene_world_axes`, a constant of the twin saved with the checkpoint).  Mixed with the
tool-relative rotation like the positions, each with its own offset.

`turned_orientation` turns the summary's (cos k*yaw, sin k*yaw) by a random object yaw in training
(`SurgVLAConfig.scene_yaw_noise_deg`), for a head that will be told a locator's yaw.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from surgbot.policies.vla.configuration_surgvla import POSE_DIM, SCENE_ORIENTATION, SCENE_POSITIONS

POSITION_DIM = 3
ROTATION = slice(3, 9)                              # the 6D rotation's columns of a pose (contract section 7)
ROTATION_DIM = 6
ANCHORS = 1 + len(SCENE_POSITIONS)                  # the tool, then the scene's points in SCENE_POSITIONS order
# a step's outputs: the tool-relative pose offsets, an offset from each scene point, a weight logit per anchor
ANCHORED_STEP_DIM = POSE_DIM + POSITION_DIM * len(SCENE_POSITIONS) + ANCHORS
# the orientation symmetries the rotation anchors assume (surgbot.sim.envs.scene_state.ORIENTATION_SYMMETRY:
# peg_transfer's block, needle_pick's needle; reach's disc has none and its weights learn to ignore them)
YAW_SYMMETRIES = (4, 2)
BLOCK_SYMMETRY, NEEDLE_SYMMETRY = YAW_SYMMETRIES
SAME_POINT_TOLERANCE = 1e-6                         # normalised units: a summary's place point is its grasp point
ROTATION_ANCHORS = 1 + len(YAW_SYMMETRIES)          # the tool's rotation, then one per symmetry
# with scene_anchored_yaw, a step's further outputs: an offset from each rotation anchor, a weight logit each
YAW_STEP_DIM = ROTATION_DIM * len(YAW_SYMMETRIES) + ROTATION_ANCHORS


def step_dim(scene_anchored: bool, anchored_yaw: bool = False) -> int:
    """Outputs per chunk step of the head."""
    if not scene_anchored:
        return POSE_DIM
    return ANCHORED_STEP_DIM + (YAW_STEP_DIM if anchored_yaw else 0)


def yaw_anchors(tool_rot6d: Tensor, orientation: Tensor, world_axes: Tensor) -> Tensor:
    """tool_rot6d [B, 6] (the tool's rotation, actions' frame), orientation [B, 2] (the summary's cos k*yaw,
    sin k*yaw) and world_axes [6] (the world's x then y axis in the actions' frame) -> [B, len(YAW_SYMMETRIES),
    6]: per symmetry k, the jaws-down rotation (sim.tasks.base.down_rotation: jaw axis at the yaw, approach
    straight down) at the object's yaw plus the multiple of 2 pi / k nearest the tool's yaw, as a 6D rotation."""
    wx, wy = world_axes[:3], world_axes[3:]
    tool_x = tool_rot6d[:, :3]
    tool_yaw = torch.atan2(tool_x @ wy, tool_x @ wx)                     # [B] about the world's vertical
    out = []
    for k in YAW_SYMMETRIES:
        period = 2.0 * torch.pi / k
        base = torch.atan2(orientation[:, 1], orientation[:, 0]) / k
        yaw = base + torch.round((tool_yaw - base) / period) * period
        c, s = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        # down_rotation(yaw) = [x, y, z] with x = (c, s, 0), y = (s, -c, 0) in the world
        out.append(torch.cat([c * wx + s * wy, s * wx - c * wy], dim=-1))
    return torch.stack(out, dim=1)


def normalised_yaw_anchors(state_as_action: Tensor, scene: Tensor, world_axes: Tensor, action_mean: Tensor,
                           action_scale: Tensor) -> Tensor:
    """`yaw_anchors` for a normalised state [B, 10] and scene [B, >= 8], in normalised action units: the
    action stats (mean, std + eps) [10] take the tool's rotation out of and the anchors into them."""
    tool = state_as_action[:, ROTATION] * action_scale[ROTATION] + action_mean[ROTATION]
    anchors = yaw_anchors(tool, scene[:, SCENE_ORIENTATION], world_axes.to(tool.dtype))
    return (anchors - action_mean[ROTATION]) / action_scale[ROTATION]


def anchored_chunk(raw: Tensor, state_as_action: Tensor, scene: Tensor,
                   rotations: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """raw [B, H, step_dim] head outputs, state_as_action [B, 10] and scene [B, >= 8] (positions normalised like
    the actions), with scene_anchored_yaw rotations [B, len(YAW_SYMMETRIES), 6] (`yaw_anchors`, normalised like
    the actions) -> (chunk [B, H, 10] normalised actions, position anchor weights [B, H, ANCHORS])."""
    expected = step_dim(True, rotations is not None)
    if raw.shape[-1] != expected:
        raise ValueError(f"anchored head outputs must have {expected} per step, got {raw.shape[-1]}")
    chunk = state_as_action[:, None, :] + raw[..., :POSE_DIM]
    offsets = raw[..., POSE_DIM:POSE_DIM + POSITION_DIM * len(SCENE_POSITIONS)]
    weights = torch.softmax(raw[..., ANCHORED_STEP_DIM - ANCHORS:ANCHORED_STEP_DIM], dim=-1)
    points = [chunk[..., :POSITION_DIM]]              # anchor 0: the tool, its offset already added
    for i, (lo, hi) in enumerate(SCENE_POSITIONS):
        points.append(scene[:, None, lo:hi] + offsets[..., POSITION_DIM * i:POSITION_DIM * (i + 1)])
    position = (torch.stack(points, dim=-2) * weights[..., None]).sum(dim=-2)
    rotation = chunk[..., ROTATION]
    if rotations is not None:
        extra = raw[..., ANCHORED_STEP_DIM:]
        rot_weights = torch.softmax(extra[..., -ROTATION_ANCHORS:], dim=-1)
        candidates = [rotation]
        for i in range(len(YAW_SYMMETRIES)):
            candidates.append(rotations[:, None, i] + extra[..., ROTATION_DIM * i:ROTATION_DIM * (i + 1)])
        rotation = (torch.stack(candidates, dim=-2) * rot_weights[..., None]).sum(dim=-2)
    return torch.cat([position, rotation, chunk[..., ROTATION.stop:]], dim=-1), weights


def turned_orientation(scene: Tensor, std_deg: float) -> Tensor:
    """The normalised summaries [B, >= 8] with each orientation pair (cos k*yaw, sin k*yaw) turned by a
    Gaussian object yaw of `std_deg` (SurgVLAConfig.scene_yaw_noise_deg), k read off the summary: a place
    point apart from the grasp point is the block's, otherwise the needle's; a (0, 0) pair stays."""
    (g0, g1), (p0, p1) = SCENE_POSITIONS
    apart = (scene[:, p0:p1] - scene[:, g0:g1]).abs().amax(dim=-1) > SAME_POINT_TOLERANCE
    k = torch.where(apart, float(BLOCK_SYMMETRY), float(NEEDLE_SYMMETRY))
    angle = k * torch.randn_like(k) * math.radians(std_deg)
    c, s = torch.cos(angle), torch.sin(angle)
    pair = scene[:, SCENE_ORIENTATION]
    out = scene.clone()
    out[:, SCENE_ORIENTATION] = torch.stack([c * pair[:, 0] - s * pair[:, 1], s * pair[:, 0] + c * pair[:, 1]], -1)
    return out
