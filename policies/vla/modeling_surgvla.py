"""SurgVLA: a small vision-language-action policy that trains from scratch on 2 CPU cores.

The network (network_surgvla.SurgVLANet) reads the image, the instruction, the state and a scene
summary and outputs H x 10 normalised actions (L1 loss); this module is the LeRobot policy around it.

The head predicts the chunk as an offset from the current state expressed in
action units (the buffers below hold the dataset's state/action stats), so
an untrained head already outputs "stay where you are" and training learns
motions rather than absolute positions.  The output is still the absolute
pose of contract section 7 (the postprocessor unnormalises it).

At inference the goal head (trained to say where the episode ends) also gives a
per-episode goal memory: its estimate from the episode's first chunk, when the
target is still in plain view, is kept, and later chunks that end near it are
bent to end on it (`SurgVLAConfig.goal_memory_chunks`; `reset()` starts an episode).
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from torch import Tensor

from surgbot.policies.vla.anchored_surgvla import (
    anchored_chunk,
    normalised_yaw_anchors,
    turned_orientation,
)
from surgbot.policies.vla.configuration_surgvla import (
    ACTION_KEY,
    GOAL_KEY,
    IMAGE_KEY,
    JAW_INDEX,
    LANGUAGE_KEY,
    POLICY_TYPE,
    POSE_DIM,
    SCENE_KEY,
    SCENE_POSITIONS,
    SCENE_SEEN_KEY,
    STATE_KEY,
    SurgVLAConfig,
)
from surgbot.policies.vla.encoder_surgvla import GOAL_DIM, crop_image, glimpse_source, random_shift
from surgbot.policies.vla.network_surgvla import SurgVLANet

PAD_KEY = "action_is_pad"


def _stat(stats: dict | None, key: str, name: str, default: float) -> Tensor:
    value = ((stats or {}).get(key) or {}).get(name)
    if value is None:
        return torch.full((POSE_DIM,), float(default))
    return torch.as_tensor(value, dtype=torch.float32).reshape(POSE_DIM)


class SurgVLAPolicy(PreTrainedPolicy):
    """LeRobot policy `surgvla` (see module docstring)."""

    config_class = SurgVLAConfig
    name = POLICY_TYPE

    def __init__(self, config: SurgVLAConfig, dataset_stats: dict | None = None, dataset_meta=None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        if dataset_meta is not None and not config.known_instructions:
            config.known_instructions = [str(t) for t in dataset_meta.tasks.index]
        self.model = SurgVLANet(config)
        # state (normalised) -> action units: a = (s*std_s + mean_s - mean_a) / (std_a + eps).
        # Saved with the weights, so a checkpoint carries what it was trained with.
        self.register_buffer("state_mean", _stat(dataset_stats, STATE_KEY, "mean", 0.0))
        self.register_buffer("state_std", _stat(dataset_stats, STATE_KEY, "std", 1.0))
        self.register_buffer("action_mean", _stat(dataset_stats, ACTION_KEY, "mean", 0.0))
        self.register_buffer("action_std", _stat(dataset_stats, ACTION_KEY, "std", 1.0))
        # scene_anchored_yaw: the world's x and y axes in the actions' frame (a constant of the twin)
        self.register_buffer("world_axes", torch.as_tensor(config.scene_world_axes or [0.0] * 6,
                                                           dtype=torch.float32), persistent=False)
        self.reset()

    def get_optim_params(self) -> dict:
        return self.parameters()

    def reset(self) -> None:
        """A new episode: the action queue, the goal memory and the scene memory start empty."""
        self._action_queue: deque[Tensor] = deque([], maxlen=self.config.n_action_steps)
        self._goal_sum: Tensor | None = None      # [B, 3] normalised goal estimates summed
        self._goal_count = 0
        self._grasped = torch.zeros(1, dtype=torch.bool)     # goal_target first_grasp: the grasp is played
        self._scene_memory: Tensor | None = None  # scene_locator: the first image's estimate [B, scene_dim]

    def _remember_goal(self, chunk: Tensor, goal: Tensor | None) -> Tensor:
        """The goal memory of `SurgVLAConfig.goal_memory_chunks` applied to a [B, H, 10] chunk."""
        if goal is None or self.config.goal_memory_chunks <= 0:
            return chunk
        if self._goal_sum is None or self._goal_sum.shape != goal.shape:
            self._goal_sum, self._goal_count = torch.zeros_like(goal), 0
            self._grasped = torch.zeros(goal.shape[0], dtype=torch.bool, device=goal.device)
        if self._goal_count < self.config.goal_memory_chunks:
            self._goal_sum = self._goal_sum + goal
            self._goal_count += 1
        remembered = self._goal_sum / self._goal_count
        batch, horizon = chunk.shape[:2]
        steps = torch.arange(horizon, device=chunk.device)
        anchor = torch.full((batch,), horizon - 1, dtype=torch.long, device=chunk.device)
        allowed = torch.ones(batch, dtype=torch.bool, device=chunk.device)
        if self.config.goal_target == "first_grasp":
            closed = self._jaw_rad(chunk) < self.config.grasp_jaw_rad                     # [B, H]
            closes = ~closed[:, 0] & closed.any(dim=1)
            anchor = torch.where(closes, closed.to(torch.int8).argmax(dim=1), anchor)    # the closing step
            allowed = ~self._grasped                     # after the first grasp nothing is moved (the lift)
            # a grasp this call's played steps reach is the episode's first: later chunks are left alone
            self._grasped = self._grasped | (closes & (anchor < self.config.n_action_steps))
        rows = torch.arange(batch, device=chunk.device)
        gap = remembered - chunk[rows, anchor, :GOAL_DIM]                              # [B, 3] action units
        scale = self.action_std[:GOAL_DIM] + self.config.normalization_eps              # -> metres
        # 3-D: a chunk descending to grasp under a goal 2 cm up (needle_pick's lift) is not bent
        near = allowed & ((gap * scale).norm(dim=-1) < self.config.goal_memory_radius_m)   # [B]
        if self.config.goal_memory_max_jaw_rad is not None:                              # closed jaws only
            near = near & (self._jaw_rad(chunk)[rows, anchor] < self.config.goal_memory_max_jaw_rad)
        # linear up to the anchor step, the steps after it shifted as much
        ramp = ((steps[None, :] + 1).to(chunk.dtype) / (anchor[:, None] + 1).to(chunk.dtype)).clamp(max=1.0)
        bent = chunk.clone()
        bent[:, :, :GOAL_DIM] += ramp[:, :, None] * (gap * near[:, None])[:, None, :]
        return bent

    def _scene(self, batch: dict[str, Tensor], image: Tensor) -> Tensor | None:
        """The action head's scene input [B, scene_dim] (None without scene_dim).

        From the batch (the simulator's values) with its positions normalised like the actions' and, in
        training, `scene_noise_m` of Gaussian noise on them; or, with `scene_locator` at inference, the
        locator's estimate from the episode's first image (`image` as the encoder sees it), kept for
        the episode (`reset()` forgets it): the first view shows the objects before the tool covers them."""
        if not self.config.scene_dim:
            return None
        if self.model.scene_locator is not None and not self.training:
            if self._scene_memory is None or self._scene_memory.shape[0] != image.shape[0]:
                self._scene_memory = self.locate_scene(image, batch[LANGUAGE_KEY],
                                                       self.prepare_glimpse_image(batch[IMAGE_KEY]))
            return self._scene_memory
        scene = self.normalised_scene(batch)
        if self.training and self.config.scene_noise_m > 0:
            noise = torch.zeros_like(scene)
            scale = self.action_std[:GOAL_DIM] + self.config.normalization_eps
            for lo, hi in SCENE_POSITIONS:
                noise[:, lo:hi] = self.config.scene_noise_m * torch.randn_like(scene[:, lo:hi]) / scale
            scene = scene + noise
        if self.training and self.config.scene_yaw_noise_deg > 0:
            scene = turned_orientation(scene, self.config.scene_yaw_noise_deg)
        return scene

    def locate_scene(self, image: Tensor, language: Tensor, glimpse_image: Tensor | None) -> Tensor:
        """The scene estimate [B, scene_dim] from a first image (`SurgVLANet.locate`)."""
        return self.model.locate(image, language, glimpse_image)

    def normalised_scene(self, batch: dict[str, Tensor]) -> Tensor:
        """The batch's SCENE_KEY [B, scene_dim], positions normalised like the actions' (metres -> units)."""
        if SCENE_KEY not in batch:
            raise KeyError(f"surgvla with scene_dim={self.config.scene_dim} needs '{SCENE_KEY}' in the batch")
        scene = batch[SCENE_KEY].to(self.action_mean.dtype)
        if scene.ndim != 2 or scene.shape[-1] != self.config.scene_dim:
            raise ValueError(f"'{SCENE_KEY}' must be [B, {self.config.scene_dim}], got {tuple(scene.shape)}")
        scene = scene.clone()
        scale = self.action_std[:GOAL_DIM] + self.config.normalization_eps
        for lo, hi in SCENE_POSITIONS:
            scene[:, lo:hi] = (scene[:, lo:hi] - self.action_mean[:GOAL_DIM]) / scale
        return scene

    def _jaw_rad(self, chunk: Tensor) -> Tensor:
        """[B, H] jaw commands of a normalised chunk, in radians."""
        return chunk[:, :, JAW_INDEX] * (self.action_std[JAW_INDEX] + self.config.normalization_eps) \
            + self.action_mean[JAW_INDEX]

    def prepare_image(self, image: Tensor) -> Tensor:
        """A normalised frame [B, 3, H, W] as the encoders see it: cropped, resized to image_size and, in
        training, shifted (the locator's training renders its frames through this too)."""
        image = crop_image(image, self.config.crop)
        h, w = self.config.image_size
        if image.shape[-2:] != (h, w):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
        if self.training and self.config.random_shift_px > 0:
            image = random_shift(image, self.config.random_shift_px)[0]
        return image

    def prepare_glimpse_image(self, image: Tensor) -> Tensor | None:
        """The normalised frame [B, 3, H, W] as the locator's glimpse reads it: cropped and resized to
        scene_locator_glimpse_scale x image_size; None where the glimpse reads the encoder's image (scale 1)."""
        scale = self.config.scene_locator_glimpse_scale
        if scale == 1.0:
            return None
        return glimpse_source(image, self.config.crop, self.config.image_size, scale)

    def _chunk(self, batch: dict[str, Tensor], with_goal: bool = False):
        """[B, H, 10] normalised actions; with_goal: also the goal head's [B, 3] (normalised positions)."""
        for key in (IMAGE_KEY, STATE_KEY, LANGUAGE_KEY):
            if key not in batch:
                raise KeyError(f"surgvla input '{key}' missing (run the surgvla preprocessor first)")
        eps = self.config.normalization_eps
        state = batch[STATE_KEY].clamp(-self.config.state_clip, self.config.state_clip)
        image = self.prepare_image(batch[IMAGE_KEY])
        state_as_action = (state * (self.state_std + eps) + self.state_mean - self.action_mean) / (
            self.action_std + eps)
        scene = summary = self._scene(batch, image)
        if scene is not None and self.config.scene_relative:     # the motions to the grasp and place points
            tool = state_as_action[:, :GOAL_DIM]
            scene = torch.cat([scene, *(scene[:, lo:hi] - tool for lo, hi in SCENE_POSITIONS)], dim=-1)
        feats = self.model.features(image, state, batch[LANGUAGE_KEY], scene)
        raw = self.model.head(feats).reshape(-1, self.config.chunk_size, self.model.step)
        if self.config.scene_anchored:
            rotations = None
            if self.config.scene_anchored_yaw:
                rotations = normalised_yaw_anchors(state_as_action, summary, self.world_axes, self.action_mean,
                                                   self.action_std + eps)
            chunk, _ = anchored_chunk(raw, state_as_action, summary, rotations)
        else:
            chunk = state_as_action[:, None, :] + raw
        if self.config.jaw_absolute:        # the head's jaw output is the command itself (SurgVLAConfig)
            chunk = torch.cat([chunk[..., :JAW_INDEX], raw[..., JAW_INDEX:JAW_INDEX + 1]], dim=-1)
        if not with_goal:
            return chunk
        if self.model.goal is None:
            return chunk, None
        if self.config.goal_encoder:        # its own encoder: image + instruction, absolute goal
            return chunk, self.model.goal(image, batch[LANGUAGE_KEY])
        if self.config.goal_from_image:     # features() ends with the state's: left out, absolute goal
            return chunk, self.model.goal(feats[:, : -self.config.state_hidden_dim])
        return chunk, state_as_action[:, :GOAL_DIM] + self.model.goal(feats)

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        """[B, H, 10] normalised actions (the postprocessor unnormalises them).

        Stateful within an episode (the goal memory, see `SurgVLAConfig`): call `reset()` first."""
        self.eval()
        return self._remember_goal(*self._chunk(batch, with_goal=True))

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        """One action; a new chunk is predicted when the first n_action_steps are played."""
        self.eval()
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch)[:, : self.config.n_action_steps]
            self._action_queue.extend(chunk.transpose(0, 1))
        return self._action_queue.popleft()

    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        pred, goal = self._chunk(batch, with_goal=True)
        err = F.l1_loss(pred, batch[ACTION_KEY], reduction="none")
        if PAD_KEY in batch:
            err = err * (~batch[PAD_KEY]).unsqueeze(-1)
        per_sample = err.mean(dim=(1, 2))
        info = {"l1_loss": float(per_sample.mean().detach())}
        if goal is not None and GOAL_KEY in batch:
            # the episode's last position, normalised like the actions (the batch is not: the key is ours)
            target = (batch[GOAL_KEY][:, :GOAL_DIM] - self.action_mean[:GOAL_DIM]) / (
                self.action_std[:GOAL_DIM] + self.config.normalization_eps)
            goal_err = F.l1_loss(goal, target, reduction="none").mean(dim=1)
            info["goal_l1_loss"] = float(goal_err.mean().detach())
            per_sample = per_sample + self.config.goal_loss_weight * goal_err
        if self.model.scene_locator is not None:
            # the locator learns the simulator's summary; the action head was given the true one (+ noise)
            if SCENE_SEEN_KEY not in batch:
                raise KeyError(f"surgvla with scene_locator needs '{SCENE_SEEN_KEY}' in the batch (frame cache)")
            seen = batch[SCENE_SEEN_KEY].reshape(-1) > 0
            true_scene = self.normalised_scene(batch)
            scene_err = torch.zeros_like(per_sample)
            if bool(seen.any()):     # its second encoder runs on those frames only (~1 in 5 of a batch)
                image = self.prepare_image(batch[IMAGE_KEY][seen])
                scene_err[seen] = F.l1_loss(self.model.scene_locator(image, batch[LANGUAGE_KEY][seen]),
                                            true_scene[seen], reduction="none").mean(dim=1)
            # the mean over the frames that show the scene as reset, so the loss's scale does not depend
            # on how many of the batch's frames do
            shown = seen.sum().clamp(min=1)
            info["scene_l1_loss"] = float(scene_err.sum().detach() / shown)
            per_sample = per_sample + self.config.scene_loss_weight * scene_err * (seen.numel() / shown)
        loss = per_sample if reduction == "none" else per_sample.mean()
        return loss, info

