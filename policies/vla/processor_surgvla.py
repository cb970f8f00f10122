"""SurgVLA pre/post-processors: LeRobot pipelines plus one instruction-embedding step.

Preprocessor: rename (none) -> add batch dim -> device -> instruction text
(`task`) to its frozen MiniLM embedding -> normalise image/state/action with
the dataset stats.  Postprocessor: unnormalise the action chunk -> CPU.
LeRobot saves both next to the weights (`policy_preprocessor.json`, ...) and
`make_pre_post_processors(config, pretrained_path=...)` loads them back; the
embedding step is stored by its import path, so loading needs no registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lerobot.configs.types import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import (
    AddBatchDimensionProcessorStep,
    DeviceProcessorStep,
    NormalizerProcessorStep,
    ObservationProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    RenameObservationsProcessorStep,
    TransitionKey,
    UnnormalizerProcessorStep,
)
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.constants import POLICY_POSTPROCESSOR_DEFAULT_NAME, POLICY_PREPROCESSOR_DEFAULT_NAME

from surgbot.policies.vla.configuration_surgvla import LANGUAGE_DIM, LANGUAGE_KEY, SurgVLAConfig
from surgbot.policies.vla.language import InstructionEncoder


@dataclass
class InstructionEmbeddingStep(ObservationProcessorStep):
    """`complementary_data["task"]` (str or list of str) -> observation[LANGUAGE_KEY] float [B, 384]."""

    task_key: str = "task"

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        comp = self.transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}
        task = comp.get(self.task_key)
        if isinstance(task, str):
            task = [task]
        if not isinstance(task, (list, tuple)) or not task or not all(isinstance(t, str) for t in task):
            raise ValueError(f"surgvla needs the instruction text under '{self.task_key}' (str or list of str)")
        emb = InstructionEncoder.shared().encode(list(task))
        device = next((v.device for v in observation.values() if isinstance(v, torch.Tensor)), None)
        out = dict(observation)
        out[LANGUAGE_KEY] = emb.to(device) if device is not None else emb
        return out

    def get_config(self) -> dict[str, Any]:
        return {"task_key": self.task_key}

    def transform_features(
        self, features: dict[PipelineFeatureType, dict[str, PolicyFeature]]
    ) -> dict[PipelineFeatureType, dict[str, PolicyFeature]]:
        features[PipelineFeatureType.OBSERVATION].setdefault(
            LANGUAGE_KEY, PolicyFeature(type=FeatureType.LANGUAGE, shape=(LANGUAGE_DIM,)))
        return features


def make_surgvla_pre_post_processors(
    config: SurgVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    input_steps = [
        RenameObservationsProcessorStep(rename_map={}),
        AddBatchDimensionProcessorStep(),
        DeviceProcessorStep(device=config.device),
        InstructionEmbeddingStep(),
        NormalizerProcessorStep(
            features={**config.input_features, **config.output_features},
            norm_map=config.normalization_mapping,
            stats=dataset_stats,
            eps=config.normalization_eps,
            device=config.device,
        ),
    ]
    output_steps = [
        UnnormalizerProcessorStep(
            features=config.output_features, norm_map=config.normalization_mapping, stats=dataset_stats,
            eps=config.normalization_eps,
        ),
        DeviceProcessorStep(device="cpu"),
    ]
    return (
        PolicyProcessorPipeline[dict[str, Any], dict[str, Any]](
            steps=input_steps, name=POLICY_PREPROCESSOR_DEFAULT_NAME),
        PolicyProcessorPipeline[PolicyAction, PolicyAction](
            steps=output_steps, name=POLICY_POSTPROCESSOR_DEFAULT_NAME,
            to_transition=policy_action_to_transition, to_output=transition_to_policy_action),
    )
