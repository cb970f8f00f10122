"""SurgVLANet: the network of the `surgvla` policy (modeling_surgvla.py holds the LeRobot policy around it).

    image (normalised, resized to image_size) --conv blocks, each FiLM-modulated
        by the instruction--> spatial soft-argmax keypoints + pooled features
    instruction -> frozen MiniLM embedding (preprocessor) -> MLP -> FiLM params
    state (normalised, clamped) -> MLP
    scene summary (scene_dim) -> MLP
    [image, language, scene, state] -> MLP -> H x step head outputs

plus the scene locators that estimate the scene summary from an episode's first image, and the
training-only goal head.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from surgbot.policies.vla.anchored_surgvla import step_dim
from surgbot.policies.vla.configuration_surgvla import POSE_DIM, SCENE_KEY, SCENE_ORIENTATION, SurgVLAConfig
from surgbot.policies.vla.encoder_surgvla import (
    GOAL_DIM,
    Locator,
    encode,
    film_stack,
    identity_film,
)

ORIENTATION_EPS = 1e-9        # locate: a mean yaw pair this short is left unscaled (opposite estimates)


def members_mean(estimates: Tensor) -> Tensor:
    """Locator members' scene estimates [M, B, scene_dim] -> their mean [B, scene_dim], the (cos, sin)
    yaw pair rescaled to the members' mean length (a mean of unit-like vectors pointing apart is
    shorter than any of them)."""
    mean = estimates.mean(dim=0)
    pair = mean[:, SCENE_ORIENTATION]
    length = estimates[:, :, SCENE_ORIENTATION].norm(dim=-1).mean(dim=0)
    mean[:, SCENE_ORIENTATION] = pair * (length / pair.norm(dim=-1).clamp_min(ORIENTATION_EPS))[:, None]
    return mean


class SurgVLANet(nn.Module):
    def __init__(self, config: SurgVLAConfig):
        super().__init__()
        self.config = config
        chans = list(config.conv_channels)
        self.step = step_dim(config.scene_anchored, config.scene_anchored_yaw)    # head outputs per chunk step
        self.blocks, self.keypoints, self._split = film_stack(config)
        self.language = nn.Sequential(
            nn.Linear(config.language_dim, config.language_hidden_dim), nn.ReLU(),
            nn.Linear(config.language_hidden_dim, config.language_hidden_dim), nn.ReLU())
        self.film = identity_film(config.language_hidden_dim, self._split)
        self.state = nn.Sequential(
            nn.Linear(POSE_DIM, config.state_hidden_dim), nn.ReLU(),
            nn.Linear(config.state_hidden_dim, config.state_hidden_dim), nn.ReLU())
        # the scene summary (SurgVLAConfig.scene_dim), embedded like the state
        self.scene = nn.Sequential(
            nn.Linear(config.scene_input_dim, config.state_hidden_dim), nn.ReLU(),
            nn.Linear(config.state_hidden_dim, config.state_hidden_dim), nn.ReLU()) if config.scene_dim else None
        feat = 2 * config.num_keypoints + chans[-1] + config.language_hidden_dim + config.state_hidden_dim
        if self.scene is not None:
            feat += config.state_hidden_dim
        # where the objects are, from the first image (SurgVLAConfig.scene_locator): inference's scene input
        self.scene_locator = (Locator(config, config.scene_dim, config.scene_locator_glimpse_px)
                              if config.scene_locator else None)
        # more locators averaged with it (SurgVLAConfig.scene_locator_extra; None: the keys of one-locator
        # checkpoints stay as they were)
        self.scene_locator_extra = nn.ModuleList(
            Locator(config, config.scene_dim, config.scene_locator_glimpse_px)
            for _ in range(config.scene_locator_extra)) if config.scene_locator_extra else None
        self.head = nn.Sequential(
            nn.Linear(feat, config.head_hidden_dim), nn.ReLU(), nn.Dropout(config.dropout),
            nn.Linear(config.head_hidden_dim, config.head_hidden_dim), nn.ReLU(),
            nn.Linear(config.head_hidden_dim, config.chunk_size * self.step))
        # untrained: offset 0 = hold the current pose (scene_anchored: the mean of the tool and the scene's points)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        # where the episode ends (action units; an offset from the state, or with goal_from_image the
        # absolute position from image + instruction features): a training-only target
        goal_feat = feat - config.state_hidden_dim if config.goal_from_image else feat
        if config.goal_loss_weight <= 0:
            self.goal = None
        elif config.goal_encoder:
            self.goal = Locator(config)
        else:
            self.goal = nn.Sequential(nn.Linear(goal_feat, config.head_hidden_dim // 2), nn.ReLU(),
                                      nn.Linear(config.head_hidden_dim // 2, GOAL_DIM))

    def features(self, image: Tensor, state: Tensor, language: Tensor, scene: Tensor | None = None) -> Tensor:
        """image [B,3,h,w] normalised, state [B,10] normalised, language [B,384], scene [B,scene_input_dim]
        normalised (with scene_dim only) -> features [B, F], the state's last."""
        lang = self.language(language)
        img = encode(self.blocks, self.keypoints, torch.split(self.film(lang), self._split, dim=-1), image)
        parts = [img, lang]
        if self.scene is not None:
            if scene is None:
                raise KeyError(f"surgvla with scene_dim={self.config.scene_dim} needs '{SCENE_KEY}'")
            parts.append(self.scene(scene))
        return torch.cat([*parts, self.state(state)], dim=-1)

    def locators(self) -> list[Locator]:
        """scene_locator and the scene_locator_extra averaged with it ([] without a locator)."""
        if self.scene_locator is None:
            return []
        return [self.scene_locator, *(self.scene_locator_extra or ())]

    def locate(self, image: Tensor, language: Tensor, glimpse_image: Tensor | None) -> Tensor:
        """The scene estimate [B, scene_dim] from a first image: scene_locator's, or `members_mean` of it
        and scene_locator_extra's."""
        members = self.locators()
        if not members:
            raise RuntimeError("this surgvla has no scene_locator")
        shift = self.config.scene_locator_average_px
        estimates = torch.stack([m.averaged(image, language, shift, glimpse_image) for m in members])
        return estimates[0] if len(members) == 1 else members_mean(estimates)

    def forward(self, image: Tensor, state: Tensor, language: Tensor, scene: Tensor | None = None) -> Tensor:
        """-> the head's outputs [B, H, step] (offsets [B,H,10] unless scene_anchored; see `features`)."""
        return self.head(self.features(image, state, language, scene)).reshape(-1, self.config.chunk_size, self.step)
