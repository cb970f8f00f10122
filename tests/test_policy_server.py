"""Policy server over pyzmq (contract section 7): protocol, fuzzed malformed requests, torch-free client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from surgbot.hw.policy_client import PolicyClient, PolicyServerError, PolicyTimeout, pack, unpack
from surgbot.policies.vla.runtime import PolicyRuntime
from tests import vla_fixtures as fx
from tests.conftest import REPO

pytestmark = pytest.mark.sim   # server and clients in separate processes, loopback only

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
FUZZ_REQUESTS = 300
STARTUP_S = 240.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    return fx.save_checkpoint(fx.make_dataset(root / "ds", episodes=2, frames=8), root / "ckpt")


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve_log") / "server.log"
    from surgbot import processes
    proc = processes.start([str(BIN / "surgbot"), "policy", "serve", "--checkpoint", str(checkpoint),
                            "--port", str(port), "--threads", "1"], cwd=REPO, env=ENV, stdout=open(log, "wb"),
                           stderr=subprocess.STDOUT)
    client = PolicyClient(port=port, timeout_s=2.0)
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            client.ping()
            break
        except PolicyTimeout:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not answer ping"
    yield proc, port, client
    client.close()
    processes.stop(proc)
    assert "policy server stopped" in log.read_text(), log.read_text()[-2000:]


def _obs(k: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(k)
    pos = fx.px_to_xyz(20 + k, 30)
    return (fx.render(fx.layout(rng), pos), np.concatenate([pos, fx.ROT6D, [0.0]]).astype(np.float32),
            fx.INSTRUCTIONS["red" if k % 2 else "blue"])


def test_ping_metadata_reset_infer(server, checkpoint):
    proc, _, client = server
    assert client.ping() > 0
    meta = client.metadata()
    assert meta["model"] == "surgvla" and meta["action_horizon"] == 16
    assert meta["state_dim"] == meta["action_dim"] == 10 and meta["image_size"] == [fx.H, fx.W]
    assert meta["fps"] == 15 and sorted(meta["instructions"]) == sorted(fx.INSTRUCTIONS.values())
    assert len(meta["checkpoint_id"]) == 12
    client.reset()
    local = PolicyRuntime(checkpoint)
    for k in range(3):
        image, state, text = _obs(k)
        actions, infer_ms = client.infer(image, state, text)
        assert actions.shape == (16, 10) and actions.dtype == np.float32 and infer_ms > 0
        expected, _ = local.infer(image, state, text)
        np.testing.assert_allclose(actions, expected, atol=1e-5)   # same weights, maybe other thread count
    assert proc.poll() is None


def _malformed(rng: np.random.Generator) -> bytes:
    image, state, text = _obs(0)
    kind = int(rng.integers(0, 16))
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 200)))
    if kind == 1:
        return msgpack.packb([1, 2, 3])
    if kind == 2:
        return msgpack.packb({"nocmd": 1})
    if kind == 3:
        return pack({"cmd": "explode"})
    if kind == 4:
        return pack({"cmd": "infer"})
    if kind == 5:
        return pack({"cmd": "infer", "obs": {"image": image[:-3], "state": state, "instruction": text}})
    if kind == 6:
        return pack({"cmd": "infer", "obs": {"image": image.astype(np.float32), "state": state,
                                              "instruction": text}})
    if kind == 7:
        return pack({"cmd": "infer", "obs": {"image": image, "state": state[:7], "instruction": text}})
    if kind == 8:
        return pack({"cmd": "infer", "obs": {"image": image, "state": np.full(10, np.inf, np.float32),
                                              "instruction": text}})
    if kind == 9:
        return pack({"cmd": "infer", "obs": {"image": image, "state": state, "instruction": 42}})
    if kind == 10:   # a tagged array claiming Python objects
        return msgpack.packb({"cmd": "infer", "obs": {"image": {"__ndarray__": True, "dtype": "O",
                                                                "shape": [1], "data": b"\x00" * 8}}})
    if kind == 11:   # data shorter than the shape says
        return msgpack.packb({"cmd": "infer", "obs": {"image": {"__ndarray__": True, "dtype": "|u1",
                                                                "shape": [fx.H, fx.W, 3], "data": b"\x00"}}})
    if kind == 12:
        return msgpack.packb({"cmd": "infer", "obs": {"image": {"__ndarray__": True, "dtype": "|u1",
                                                                "shape": [-1, 2**40], "data": b""}}})
    if kind == 13:   # valid msgpack cut short
        raw = pack({"cmd": "infer", "obs": {"image": image, "state": state, "instruction": text}})
        return raw[: int(rng.integers(1, len(raw) - 1))]
    if kind == 14:
        return pack({"cmd": "infer", "obs": {"image": image, "state": state.astype(np.int32),
                                              "instruction": text}})
    return pack({"cmd": None, "obs": [1, {"x": b"y"}]})


def test_server_survives_hundreds_of_malformed_requests(server):
    proc, port, client = server
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{port}")
    rng = np.random.default_rng(0)
    try:
        for i in range(FUZZ_REQUESTS):
            sock.send(_malformed(rng))
            assert sock.poll(10_000, zmq.POLLIN), f"no reply to malformed request {i}"
            reply = unpack(sock.recv())
            assert isinstance(reply, dict) and isinstance(reply.get("error"), str) and reply["error"], reply
        sock.send_multipart([b"a", b"b"])   # two frames: one error reply
        assert sock.poll(10_000, zmq.POLLIN)
        assert "one frame" in unpack(sock.recv())["error"]
    finally:
        sock.close(linger=0)
    assert proc.poll() is None
    actions, _ = client.infer(*_obs(1))
    assert actions.shape == (16, 10)
    with pytest.raises(PolicyServerError, match="state must be"):
        client.infer(_obs(1)[0], np.zeros(9, np.float32), "x")


def test_client_times_out_and_recovers_on_a_dead_port():
    port = free_port()
    with PolicyClient(port=port, timeout_s=0.2) as client:
        for _ in range(2):   # a REQ socket that missed a reply is replaced, so the second try is a timeout too
            t0 = time.monotonic()
            with pytest.raises(PolicyTimeout):
                client.ping()
            assert time.monotonic() - t0 < 2.0


def test_client_refuses_a_float_image_before_sending():
    with PolicyClient(port=free_port(), timeout_s=0.2) as client:
        with pytest.raises(ValueError, match="uint8"):
            client.infer(np.zeros((fx.H, fx.W, 3), np.float32), np.zeros(10, np.float32), "x")


def test_client_module_does_not_import_torch():
    code = ("import sys\nimport surgbot.hw.policy_client\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lerobot', 'transformers'))\n"
            "print(bad)\nsys.exit(1 if bad else 0)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_serve_missing_checkpoint_is_a_one_line_error(tmp_path):
    res = subprocess.run([str(BIN / "surgbot"), "policy", "serve", "--checkpoint", str(tmp_path / "nope"),
                          "--port", str(free_port())], cwd=REPO, env=ENV, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"surgbot policy: error: checkpoint {tmp_path / 'nope'} not found"


def test_wire_format_round_trip_and_refusals():
    arrays = [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((2, 2, 3), np.uint8),
              np.array([True, False]), np.array(3.5), np.arange(5, dtype=">i8")]
    back = unpack(pack({"a": arrays, "s": "x", "n": np.float64(2.0)}))
    for a, b in zip(arrays, back["a"], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    assert back["s"] == "x" and back["n"] == 2.0
    with pytest.raises(TypeError):
        pack({"x": np.array([object()])})
    with pytest.raises(TypeError):
        pack({"x": {1, 2}})
    for bad in ({"__ndarray__": True, "dtype": "<U4", "shape": [1], "data": b"abcd" * 4},
                {"__ndarray__": True, "dtype": "nonsense", "shape": [1], "data": b"a"},
                {"__ndarray__": True, "dtype": "<f4", "shape": [2], "data": b"abcd"},
                {"__ndarray__": True, "dtype": "<f4", "shape": "2", "data": b"abcdabcd"}):
        with pytest.raises(ValueError):
            unpack(msgpack.packb(bad))


def test_client_knows_at_once_that_a_killed_server_is_gone(tmp_path):
    """server_lost(): a zmq socket monitor sees the TCP connection drop when the server dies, between
    requests (the policy node holds then, instead of at its next request's timeout)."""
    from surgbot import processes
    port, mode = free_port(), tmp_path / "mode"
    mode.write_text("normal")
    argv = [sys.executable, "-m", "tests.fault_policy_server", str(port), str(mode)]
    proc = processes.start(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    with PolicyClient(port=port, timeout_s=2.0) as client:
        try:
            assert not client.server_lost()                       # nothing connected yet: not "lost"
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ping()
                    break
                except PolicyTimeout:
                    assert proc.poll() is None and time.monotonic() < deadline, "fault server did not start"
            assert not client.server_lost()
            proc.kill()
            proc.wait(10)
            t0 = time.monotonic()
            while not client.server_lost() and time.monotonic() - t0 < 5.0:
                time.sleep(0.005)
            assert client.server_lost()
            print(f"server SIGKILL -> server_lost() in {(time.monotonic() - t0) * 1e3:.1f} ms")
            proc = processes.start(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while client.server_lost():                           # zmq reconnects by itself
                assert time.monotonic() < deadline, "no reconnection to the restarted server"
                time.sleep(0.05)
        finally:
            processes.stop(proc)
