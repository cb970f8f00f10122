"""What a locator's head reads besides its glimpse: the keypoints' positions and the pooled features."""
import torch

from surgbot.policies.vla.configuration_surgvla import IMAGE_KEY, LANGUAGE_KEY
from surgbot.policies.vla.encoder_surgvla import feature_map


def head_inputs(policy, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A preprocessed batch through `policy`'s scene_locator (member 0) -> (keypoints [B, 2K], pooled [B, C])."""
    loc = policy.model.scene_locator
    with torch.no_grad():
        lang = loc.language(batch[LANGUAGE_KEY])
        x = feature_map(loc.blocks, torch.split(loc.film(lang), loc._split, dim=-1),
                        policy.prepare_image(batch[IMAGE_KEY]))
        return loc.keypoints.positions(loc.keypoints.logits(x), *x.shape[-2:]), x.mean(dim=(2, 3))
