"""Unitree G1 `unitree_hg` LowCmd_/LowState_ wire codecs and CRC, in numpy (no DDS).

Both ends of the G1 link (the sim twin and the `g1_bridge`) run at 500 Hz in
Python.  The cyclonedds Python (de)serializer and the SDK's CRC packer cost
~0.4-0.7 ms per message each (measured: LowState_ serialize 0.62 ms, CRC
0.42 ms), which at 500 Hz on each side would eat most of a core.  So the wire
format is kept in numpy here:

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
The DDS side (channels, raw readers and writers, the motion switcher) is
`surgbot.hw.unitree`; this module imports no DDS library, so tools that never
open DDS can use it.
"""

from __future__ import annotations

import binascii

import numpy as np

from surgbot import contract

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
