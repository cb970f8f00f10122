"""Unitree G1 DDS link: channel setup, `unitree_hg` LowCmd_/LowState_ codecs, CRC.

Both ends of the G1 link (the sim twin and the `g1_bridge`) run at 500 Hz in
Python.  The cyclonedds Python (de)serializer and the SDK's CRC packer cost
~0.4-0.7 ms per message each (measured: LowState_ serialize 0.62 ms, CRC
0.42 ms), which at 500 Hz on each side would eat most of a core.  So this
module keeps the wire format in numpy:

* `LOWCMD_C` / `LOWSTATE_C` are the C struct layouts the robot's CRC is
  computed over (the packing of `unitree_sdk2py.utils.crc.CRC`);
* the XCDR1 wire form differs from the C layout only in the padding after
  the first `uint8` before `motor_cmd[0]` / `motor_state[0]` (CDR aligns a
  struct by its first member, C by its widest), so converting is two slices;
* `crc32_words` is CRC-32/MPEG-2 over the words, done with `binascii.crc32`
  on bit-reversed bytes (the reflected/unreflected CRC identity).

`tests/test_g1_twin.py` checks every codec against the SDK's own serializer
and `CRC().Crc`, and the unitree-style example program talks to the twin with
the SDK's own classes only, so both paths stay interchangeable on the wire.

DDS on `lo`: the loopback interface has no MULTICAST flag, and CycloneDDS
then disables multicast and discovers peers over unicast on 127.0.0.1 by
itself (logged as "selected interface lo is not multicast-capable").  That
works between processes on one host, so no `CYCLONEDDS_URI` is needed; a
custom one (peers / AllowMulticast) can still be given by the user and is
honoured because the SDK's per-domain config only names the interface.

The cyclonedds / unitree_sdk2py imports sit in the functions that open DDS
or talk to the SDK: the codec half of this module (numpy only) serves tools
that never open DDS, and importing cyclonedds loads its C library.
"""

from __future__ import annotations

import binascii
import json
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from surgbot import contract

log = logging.getLogger(__name__)

MODE_MACHINE = contract.G1_MODE_MACHINE
NUM_MOTORS = contract.G1_NUM_MOTORS

# --------------------------------------------------------------------------
# C layouts (little-endian, natural alignment), as unitree's CRC packs them.
_MOTOR_CMD_C = np.dtype({
    "names": ["mode", "q", "dq", "tau", "kp", "kd", "reserve"],
    "formats": ["u1", "<f4", "<f4", "<f4", "<f4", "<f4", "<u4"],
    "offsets": [0, 4, 8, 12, 16, 20, 24], "itemsize": 28})
LOWCMD_C = np.dtype({
    "names": ["mode_pr", "mode_machine", "motor_cmd", "reserve", "crc"],
    "formats": ["u1", "u1", (_MOTOR_CMD_C, (NUM_MOTORS,)), ("<u4", (4,)), "<u4"],
    "offsets": [0, 1, 4, 984, 1000], "itemsize": 1004})

_IMU_C = np.dtype({
    "names": ["quaternion", "gyroscope", "accelerometer", "rpy", "temperature"],
    "formats": [("<f4", (4,)), ("<f4", (3,)), ("<f4", (3,)), ("<f4", (3,)), "<i2"],
    "offsets": [0, 16, 28, 40, 52], "itemsize": 56})
_MOTOR_STATE_C = np.dtype({
    "names": ["mode", "q", "dq", "ddq", "tau_est", "temperature", "vol", "sensor",
              "motorstate", "reserve"],
    "formats": ["u1", "<f4", "<f4", "<f4", "<f4", ("<i2", (2,)), "<f4", ("<u4", (2,)),
                "<u4", ("<u4", (4,))],
    "offsets": [0, 4, 8, 12, 16, 20, 24, 28, 36, 40], "itemsize": 56})
LOWSTATE_C = np.dtype({
    "names": ["version", "mode_pr", "mode_machine", "tick", "imu_state", "motor_state",
              "wireless_remote", "reserve", "crc"],
    "formats": [("<u4", (2,)), "u1", "u1", "<u4", _IMU_C, (_MOTOR_STATE_C, (NUM_MOTORS,)),
                ("u1", (40,)), ("<u4", (4,)), "<u4"],
    "offsets": [0, 8, 9, 12, 16, 72, 2032, 2072, 2088], "itemsize": 2092})

_XCDR1_LE = b"\x00\x01\x00\x00"   # encapsulation header: CDR, little-endian
# Where the C and CDR layouts diverge: (offset of the lone uint8 in C, in CDR,
# offset where both continue identically in C, in CDR).
_LOWCMD_SPLIT = (4, 2, 8, 4)
_LOWSTATE_SPLIT = (72, 70, 76, 72)


def _c_to_cdr(c: bytes, split: tuple[int, int, int, int]) -> bytes:
    c_byte, cdr_byte, c_rest, _ = split
    return _XCDR1_LE + c[:cdr_byte] + c[c_byte:c_byte + 1] + b"\x00" + c[c_rest:]


def _cdr_to_c(cdr: bytes, split: tuple[int, int, int, int], size: int) -> bytes | None:
    """C-layout bytes from an XCDR1 LE sample, or None if it is not one."""
    c_byte, cdr_byte, c_rest, cdr_rest = split
    if len(cdr) < 4 or cdr[:2] != _XCDR1_LE[:2]:
        return None
    body = cdr[4:]
    if len(body) < size - (c_rest - cdr_rest):
        return None
    out = (body[:cdr_byte] + bytes(c_byte - cdr_byte) + body[cdr_byte:cdr_byte + 1]
           + bytes(c_rest - c_byte - 1) + body[cdr_rest:])
    return out[:size]


# --------------------------------------------------------------------------
# CRC-32/MPEG-2 over little-endian u32 words (poly 0x04C11DB7, init ~0, MSB first)
_BITREV8 = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], dtype=np.uint8)


def _bitrev32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def crc32_words(words_le: bytes) -> int:
    """Unitree's CRC of a packed message: all words but the last (the crc itself).

    An unreflected CRC equals the bit-reversed reflected CRC of bit-reversed
    input bytes, so zlib's table CRC does the work in C.
    """
    w = np.frombuffer(words_le, dtype="<u4")[:-1]
    be = w.astype(">u4").view(np.uint8)
    reflected = binascii.crc32(_BITREV8[be].tobytes()) ^ 0xFFFFFFFF
    return _bitrev32(reflected)


# --------------------------------------------------------------------------
# Codecs

def new_lowcmd() -> np.ndarray:
    return np.zeros((), dtype=LOWCMD_C)


def new_lowstate() -> np.ndarray:
    return np.zeros((), dtype=LOWSTATE_C)


def _field_mask(dtype: np.dtype) -> np.ndarray:
    """0xFF over every field byte of a C layout, 0 over its padding."""
    mask = np.zeros(dtype.itemsize, dtype=np.uint8)

    def walk(dt: np.dtype, base: int) -> None:
        if dt.subdtype is not None:
            sub, shape = dt.subdtype
            for k in range(int(np.prod(shape))):
                walk(sub, base + k * sub.itemsize)
        elif dt.names:
            for name in dt.names:
                fdt, off = dt.fields[name][:2]
                walk(fdt, base + off)
        else:
            mask[base:base + dt.itemsize] = 0xFF

    walk(dtype, 0)
    return mask


_MASKS = {LOWCMD_C: _field_mask(LOWCMD_C), LOWSTATE_C: _field_mask(LOWSTATE_C)}


def _packed(rec: np.ndarray, dtype: np.dtype) -> bytes:
    """C bytes with zero padding: the CRC covers the padding, which numpy copies leave undefined."""
    raw = np.frombuffer(np.asarray(rec).tobytes(), dtype=np.uint8)
    return (raw & _MASKS[dtype]).tobytes()


def _encode(rec: np.ndarray, dtype: np.dtype, split, set_crc: bool) -> bytes:
    """XCDR1 bytes of a record (crc filled in, into `rec` too, unless told not to)."""
    c = _packed(rec, dtype)
    if set_crc:
        crc = crc32_words(c)
        rec["crc"] = crc
        c = c[:-4] + int(crc).to_bytes(4, "little")
    return _c_to_cdr(c, split)


def _decode(cdr: bytes, dtype: np.dtype, split) -> tuple[np.ndarray | None, bool]:
    """(record, crc_ok) from XCDR1 bytes; (None, False) if malformed."""
    c = _cdr_to_c(cdr, split, dtype.itemsize)
    if c is None:
        return None, False
    rec = np.frombuffer(bytearray(c), dtype=dtype).reshape(())
    return rec, int(rec["crc"]) == crc32_words(c)


def encode_lowcmd(cmd: np.ndarray, set_crc: bool = True) -> bytes:
    return _encode(cmd, LOWCMD_C, _LOWCMD_SPLIT, set_crc)


def encode_lowstate(state: np.ndarray, set_crc: bool = True) -> bytes:
    return _encode(state, LOWSTATE_C, _LOWSTATE_SPLIT, set_crc)


def decode_lowcmd(cdr: bytes) -> tuple[np.ndarray | None, bool]:
    return _decode(cdr, LOWCMD_C, _LOWCMD_SPLIT)


def decode_lowstate(cdr: bytes) -> tuple[np.ndarray | None, bool]:
    return _decode(cdr, LOWSTATE_C, _LOWSTATE_SPLIT)


def lowcmd_from_sdk(msg) -> np.ndarray:
    """LOWCMD_C record from an SDK `unitree_hg` LowCmd_ (for tests and tools)."""
    rec = new_lowcmd()
    rec["mode_pr"], rec["mode_machine"] = msg.mode_pr, msg.mode_machine
    for i, m in enumerate(msg.motor_cmd):
        rec["motor_cmd"][i] = (m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve)
    rec["reserve"] = msg.reserve
    rec["crc"] = msg.crc
    return rec


def lowstate_to_sdk(rec: np.ndarray):
    """SDK LowState_ from a LOWSTATE_C record (slow; tests and tools only)."""
    from unitree_sdk2py.idl.unitree_hg.msg.dds_ import IMUState_, LowState_, MotorState_
    imu = rec["imu_state"]
    motors = [MotorState_(int(m["mode"]), float(m["q"]), float(m["dq"]), float(m["ddq"]),
                          float(m["tau_est"]), [int(x) for x in m["temperature"]], float(m["vol"]),
                          [int(x) for x in m["sensor"]], int(m["motorstate"]),
                          [int(x) for x in m["reserve"]])
              for m in rec["motor_state"]]
    return LowState_([int(x) for x in rec["version"]], int(rec["mode_pr"]), int(rec["mode_machine"]),
                     int(rec["tick"]),
                     IMUState_([float(x) for x in imu["quaternion"]], [float(x) for x in imu["gyroscope"]],
                               [float(x) for x in imu["accelerometer"]], [float(x) for x in imu["rpy"]],
                               int(imu["temperature"])),
                     motors, [int(x) for x in rec["wireless_remote"]],
                     [int(x) for x in rec["reserve"]], int(rec["crc"]))


# --------------------------------------------------------------------------
# Channel setup

_init_lock = threading.Lock()
_initialized: tuple[int, str] | None = None


def init_channel(domain: int, interface: str | None = "lo") -> None:
    """`ChannelFactoryInitialize` once per process (the SDK's factory is a singleton).

    A second call with another domain is an error: one process talks to one
    robot.
    """
    global _initialized
    from unitree_sdk2py.core.channel import ChannelFactoryInitialize
    with _init_lock:
        if _initialized is not None:
            if _initialized[0] != int(domain):
                raise RuntimeError(f"unitree DDS already initialised on domain {_initialized[0]}, "
                                   f"cannot switch to {domain} in the same process")
            return
        ChannelFactoryInitialize(int(domain), interface or None)
        _initialized = (int(domain), interface or "")


_participant = None


def participant():
    """The process's DomainParticipant on the initialised G1 domain (raw readers/writers).

    One per process, like the SDK's own factory: participants created and
    dropped per reader leave listener threads calling into freed objects.
    """
    global _participant
    from cyclonedds.domain import DomainParticipant
    with _init_lock:
        if _initialized is None:
            raise RuntimeError("init_channel() first")
        if _participant is None:
            _participant = DomainParticipant(_initialized[0])
        return _participant


class RawWriter:
    """DataWriter that sends pre-encoded XCDR1 bytes (see module doc)."""

    def __init__(self, dp, topic_name: str, idl_type):
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic
        self.topic = Topic(dp, topic_name, idl_type)
        self.writer = DataWriter(dp, self.topic)
        # Pre-encoded bytes are XCDR1; a writer that negotiated XCDR2 would need
        # the SDK serializer, which we then use (slow but correct).
        self.raw_ok = self.writer._use_version_2 in (None, False)
        from cyclonedds._clayer import ddspy_write
        self._write = ddspy_write

    def write(self, cdr: bytes, sdk_sample_factory: Callable[[], object] | None = None) -> None:
        if self.raw_ok:
            ret = self._write(self.writer._ref, cdr)
            if ret < 0:
                raise RuntimeError(f"DDS write failed on {self.topic.name}: {ret}")
        elif sdk_sample_factory is not None:
            self.writer.write(sdk_sample_factory())


class RawReader:
    """DataReader that hands raw XCDR bytes (and take time) to `handler`.

    `listen=True`: a DDS listener thread calls the handler as samples arrive.
    `listen=False`: the owner calls `poll()` from its own loop (a robot's
    control tick): the samples are taken in that loop's time, so a Python
    listener thread starved of the GIL or the CPU on a loaded host cannot
    hold commands back and hand them over in a burst.
    A listening reader may be polled too (a watchdog drains it before judging
    the link): one lock keeps each take and its handler calls together, so
    the handler sees samples in the order they were taken.
    """

    def __init__(self, dp, topic_name: str, idl_type, handler: Callable[[bytes, float], None],
                 listen: bool = True):
        from cyclonedds._clayer import ddspy_take
        from cyclonedds.core import Listener
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic
        self._take = ddspy_take
        self._handler = handler
        self._lock = threading.Lock()
        self.topic = Topic(dp, topic_name, idl_type)
        listener = Listener(on_data_available=self._on_data) if listen else None
        self.reader = DataReader(dp, self.topic, listener=listener)

    def poll(self) -> int:
        """Hand every sample that has arrived to the handler; returns how many there were."""
        return self._on_data(self.reader)

    def close(self) -> None:
        """Detach the listener before the reader goes: a DDS thread must not call into a dead handler."""
        if self.reader is not None:
            self.reader.set_listener(None)
            self._handler = lambda data, t: None
            self.reader = None

    def _on_data(self, reader) -> int:
        with self._lock:
            if self.reader is None:
                return 0
            now = time.monotonic()
            ret = self._take(self.reader._ref, 32)
            if isinstance(ret, int):
                return 0
            handed = 0
            for data, info in ret:
                if info.valid_data:
                    handed += 1
                    try:
                        self._handler(data, now)
                    except Exception:  # a bad sample must not kill the DDS thread
                        log.exception("handler for %s failed", self.topic.name)
            return handed


# --------------------------------------------------------------------------
# motion_switcher RPC, served as the robot serves it

STANDING_MODE = {"form": "0", "name": "ai"}


def make_motion_switcher_server(on_check: Callable[[], dict], on_select: Callable[[str], int],
                                on_release: Callable[[], int]):
    """An SDK `rpc.server.Server` named `motion_switcher` with CheckMode/SelectMode/ReleaseMode.

    Built on unitree_sdk2py's own server classes so `MotionSwitcherClient`
    (and any program using it) talks to it unchanged.  Handlers return codes;
    CheckMode returns the JSON `{"form", "name"}` (name "" when released).
    """
    from unitree_sdk2py.comm.motion_switcher.motion_switcher_api import (
        MOTION_SWITCHER_API_ID_CHECK_MODE,
        MOTION_SWITCHER_API_ID_RELEASE_MODE,
        MOTION_SWITCHER_API_ID_SELECT_MODE,
        MOTION_SWITCHER_API_VERSION,
        MOTION_SWITCHER_SERVICE_NAME,
    )
    from unitree_sdk2py.rpc.internal import RPC_ERR_SERVER_API_PARAMETER
    from unitree_sdk2py.rpc.server import Server

    assert MOTION_SWITCHER_SERVICE_NAME == contract.MOTION_SWITCHER_SERVICE

    class MotionSwitcherServer(Server):
        def __init__(self):
            super().__init__(MOTION_SWITCHER_SERVICE_NAME)

        def Init(self):  # SDK naming
            self._RegistHandler(MOTION_SWITCHER_API_ID_CHECK_MODE, self._check, False)
            self._RegistHandler(MOTION_SWITCHER_API_ID_SELECT_MODE, self._select, False)
            self._RegistHandler(MOTION_SWITCHER_API_ID_RELEASE_MODE, self._release, False)
            self._SetApiVersion(MOTION_SWITCHER_API_VERSION)

        def _check(self, parameter: str):
            return 0, json.dumps(on_check())

        def _select(self, parameter: str):
            try:
                name = str(json.loads(parameter or "{}").get("name", ""))
            except (ValueError, AttributeError):
                return RPC_ERR_SERVER_API_PARAMETER, ""
            return on_select(name), ""

        def _release(self, parameter: str):
            return on_release(), ""

    server = MotionSwitcherServer()
    server.Init()
    return server
