"""VLA policy figures: inference p50/p99 (goal p50 < 20 ms on 2 cores) against LeRobot's ACT
in the same process, model-only time, zmq round trip (ping and infer), training step
time, checkpoint size, and the policy_node core's cost per control tick.

The weights do not change the cost, so the checkpoint is the bundled one when it
exists and otherwise a freshly initialised surgvla saved and loaded LeRobot's way
(the same files the server loads).  Camera frames are 240x320 (the twin's
default), resized inside the model.
"""

from __future__ import annotations

import copy
import json
import socket
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import make_pre_post_processors

from surgbot.bench import figure, time_calls
from surgbot.hw.policy_client import PolicyClient
from surgbot.policies.serving.server import PolicyServer
from surgbot.policies.vla.configuration_surgvla import (
    IMAGE_KEY,
    LANGUAGE_KEY,
    SCENE_KEY,
    STATE_KEY,
    SurgVLAConfig,
)
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy
from surgbot.policies.vla.runtime import PolicyRuntime, bundled_checkpoint_dir

THREADS = 1            # the server's default (see `surgbot policy serve --threads`)
FRAME_H, FRAME_W = 240, 320
INSTRUCTION = "touch the red target"
ACT_ANCHOR_MS = 130.0   # FACTS.md: ACT default, select_action at 96x128 on 2 CPU cores
ACT_STEP_ANCHOR_S = 0.41  # FACTS.md: ACT dim 256 / ff 1024 / 2 layers, batch 8, 96x96, per step


def _features(h: int, w: int) -> tuple[dict, dict, dict]:
    inputs = {IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, h, w)),
              STATE_KEY: PolicyFeature(FeatureType.STATE, (10,))}
    outputs = {"action": PolicyFeature(FeatureType.ACTION, (10,))}
    stats = {STATE_KEY: {"mean": np.zeros(10), "std": np.full(10, 0.05)},
             "action": {"mean": np.zeros(10), "std": np.full(10, 0.05)},
             IMAGE_KEY: {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)}}
    return inputs, outputs, stats


def _checkpoint(tmp: Path) -> Path:
    if (bundled_checkpoint_dir() / "model.safetensors").is_file():
        return bundled_checkpoint_dir()
    inputs, outputs, stats = _features(FRAME_H, FRAME_W)
    cfg = SurgVLAConfig(device="cpu", push_to_hub=False, input_features=inputs, output_features=outputs,
                        known_instructions=[INSTRUCTION])
    policy = SurgVLAPolicy(cfg, dataset_stats=stats)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    out = tmp / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out


def _inputs(rt: PolicyRuntime) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, rt.image_shape, dtype=np.uint8)
    state = np.array([0.0, 0.0, -0.1, 1, 0, 0, 0, 1, 0, 0.2], dtype=np.float32)
    return image, state


def _act_baseline_ms(n: int) -> list[float]:
    """LeRobot's ACT (default size, no pretrained backbone) on the same frame size: the usual CPU choice."""
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy

    inputs, outputs, _ = _features(FRAME_H, FRAME_W)
    cfg = ACTConfig(device="cpu", pretrained_backbone_weights=None, input_features=inputs,
                    output_features=outputs, chunk_size=16, n_action_steps=16)
    act = ACTPolicy(cfg).eval()
    batch = {IMAGE_KEY: torch.rand(1, 3, FRAME_H, FRAME_W), STATE_KEY: torch.zeros(1, 10)}
    with torch.inference_mode():
        return time_calls(lambda: act.predict_action_chunk(batch), n, warmup=2)


def _train_step_s(rt: PolicyRuntime, batch_size: int, n: int) -> list[float]:
    """One `policy train` step of the checkpoint's action head.  A joined scene locator
    (`surgbot policy train-locator`) is trained in a stage of its own, so it is left out here; the
    scene summary the action head trains on is part of the batch."""
    cfg = copy.deepcopy(rt.config)
    cfg.scene_locator = False
    policy = SurgVLAPolicy(cfg)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-4)
    h, w = rt.image_shape[:2]
    batch = {IMAGE_KEY: torch.randn(batch_size, 3, h, w), STATE_KEY: torch.randn(batch_size, 10),
             LANGUAGE_KEY: torch.randn(batch_size, 384), "action": torch.randn(batch_size, 16, 10),
             "action_is_pad": torch.zeros(batch_size, 16, dtype=torch.bool)}
    if cfg.scene_dim:
        batch[SCENE_KEY] = torch.randn(batch_size, cfg.scene_dim)

    def step() -> None:
        loss, _ = policy.forward(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [ms / 1e3 for ms in time_calls(step, n, warmup=2)]


def _bundled_training_figures() -> list[dict]:
    """How the bundled checkpoint was trained (its train_summary.json, written by `surgbot policy train`)."""
    path = bundled_checkpoint_dir() / "train_summary.json"
    if not path.is_file():
        return []
    s = json.loads(path.read_text())
    note = (f"bundled checkpoint: {s['steps']} steps, batch {s['batch_size']}, {sum(s['frames'])} frames, "
            "1 torch thread on the shared 2-core machine (scripts/train_default_policy.sh)")
    figures = [figure("policy_default_train_wall", "s", value=float(s["wall_s"]), note=note),
               figure("policy_default_train_step", "s", value=float(s["step_s_median"]),
                      note="median step incl. batch assembly from the in-memory frames")]
    locator = bundled_checkpoint_dir() / "locator_summary.json"
    stages = _locator_stages(json.loads(locator.read_text())) if locator.is_file() else []
    if stages:                 # the scene locators' stage (`surgbot policy train-locator`, once per locator)
        each = "; ".join(
            f"{s['config']['steps']} steps on {s['training_frames']} rendered first frames in "
            f"{s['wall_s'] / 60:.0f} min, validation needle {s['final']['needle_pick_grasp_mm_median']:.1f} mm, block "
            f"{s['final'].get('peg_transfer_grasp_mm_median', float('nan')):.2f} mm (median)" for s in stages)
        figures.append(figure(
            "policy_default_locator_wall", "s", value=float(sum(s["wall_s"] for s in stages)),
            note=f"{len(stages)} scene locator(s), together: {each}"))
    return figures


def _locator_stages(summary: dict) -> list[dict]:
    """The locators' training summaries in a bundled locator_summary.json: train-locator's own, or
    join-locator's (`locator_training`, or one per locator under `locators_from`)."""
    if "config" in summary:
        return [summary]
    if summary.get("locators_from"):
        return [e["locator_training"] for e in summary["locators_from"] if e.get("locator_training")]
    return [summary["locator_training"]] if summary.get("locator_training") else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zmq_figures(rt: PolicyRuntime, n: int) -> list[dict]:
    server = PolicyServer(rt, port=_free_port())
    ready = threading.Event()
    thread = threading.Thread(target=server.serve, args=(ready,), daemon=True)
    thread.start()
    ready.wait(10)
    image, state = _inputs(rt)
    try:
        with PolicyClient(port=int(server.endpoint.rsplit(":", 1)[1]), timeout_s=5.0) as client:
            ping = time_calls(client.ping, n)
            server_ms: list[float] = []

            def infer() -> None:
                server_ms.append(client.infer(image, state, INSTRUCTION)[1])
            total = time_calls(infer, n)
    finally:
        server.stop()
        thread.join(5)
    overhead = np.asarray(total) - np.asarray(server_ms[-len(total):])
    return [
        figure("policy_zmq_ping_roundtrip", "ms", samples=ping, note="REQ/REP loopback, msgpack"),
        figure("policy_zmq_infer_roundtrip", "ms", samples=total,
               note=f"{FRAME_H}x{FRAME_W} uint8 frame + state + instruction -> [16,10] actions"),
        figure("policy_zmq_overhead", "ms", samples=overhead, note="round trip minus the server's infer_ms"),
    ]


def _exec_tick_ms(n: int) -> list[float]:
    """One control tick of the policy_node core (scheduler + blend + gate), chunks arriving every 8 ticks."""
    from surgbot.control.policy_exec import PolicyExecutor

    ex = PolicyExecutor()
    ex.set_instruction(INSTRUCTION)
    ex.enable(True)
    home = np.array([0.0, 0.0, -0.113, 1, 0, 0, 0, 1, 0, 0.0])
    chunk = np.repeat(home[None], 16, axis=0)
    chunk[:, 0] += 0.001 * np.arange(16)
    clock = [0.0]

    def tick() -> None:
        clock[0] += 1.0 / 15.0
        ex.on_measured(home, clock[0])
        if ex.tick(clock[0]).request_chunk:
            ex.observation_taken(clock[0])
            ex.on_chunk(chunk, ex.tick_index, clock[0])
    return time_calls(tick, n)


def run(quick: bool) -> list[dict]:
    torch.set_num_threads(THREADS)
    n = 40 if quick else 400
    with tempfile.TemporaryDirectory() as tmp:
        rt = PolicyRuntime(_checkpoint(Path(tmp)))
        image, state = _inputs(rt)
        infer = time_calls(lambda: rt.infer(image, state, INSTRUCTION), n)
        torch.set_num_threads(2)
        infer2 = time_calls(lambda: rt.infer(image, state, INSTRUCTION), n)
        torch.set_num_threads(THREADS)
        obs = rt.pre({IMAGE_KEY: torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0,
                      STATE_KEY: torch.from_numpy(state)[None], "task": INSTRUCTION})
        with torch.inference_mode():
            model = time_calls(lambda: rt.policy.predict_action_chunk(obs), n)
        act = _act_baseline_ms(5 if quick else 30)
        size_mb = sum(f.stat().st_size for f in rt.path.iterdir() if f.is_file()) / 1e6
        params = sum(p.numel() for p in rt.policy.parameters())
        figures = [
            figure("policy_infer", "ms", samples=infer, baseline=float(np.median(act)),
                   baseline_name="LeRobot ACT (default, 51.6M) predict_action_chunk, same frame, same process",
                   anchor=ACT_ANCHOR_MS, anchor_source="FACTS.md: ACT select_action 96x128, 2 cores",
                   note=f"{THREADS} threads, {rt.image_shape[0]}x{rt.image_shape[1]} frame, pre+model+post; "
                        "goal p50 < 20 ms"),
            figure("policy_infer_2threads", "ms", samples=infer2, note="same call with 2 torch threads"),
            figure("policy_model_only", "ms", samples=model, note="predict_action_chunk on a prepared batch"),
            figure("policy_checkpoint_size", "MB", value=size_mb, note=f"{params / 1e6:.2f} M parameters; limit 20 MB"),
        ]
        for bs in ((8,) if quick else (8, 32)):
            figures.append(figure(f"policy_train_step_b{bs}", "s", samples=_train_step_s(rt, bs, 3 if quick else 20),
                                  anchor=ACT_STEP_ANCHOR_S if bs == 8 else None,
                                  anchor_source="FACTS.md: small ACT (15.6M), batch 8, 96x96" if bs == 8 else "",
                                  note="action head: forward + backward + AdamW, inputs already decoded (a joined "
                                       "scene locator trains in its own stage)"))
        figures += _bundled_training_figures()
        figures += _zmq_figures(rt, n)
        figures.append(figure("policy_exec_tick", "ms", samples=_exec_tick_ms(200 if quick else 5000),
                              note="policy_node core per 15 Hz tick (budget 66.7 ms): scheduler, blend, gate"))
    return figures
