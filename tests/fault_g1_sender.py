"""Sends faulty G1 commands on unitree DDS from its own process (the fault-injection suite).

A writer in the observer's process could block on DDS flow control while
that process's own `rt/arm_sdk` reader waits for the GIL; a separate sender
is also what a faulty client is.

    python -m tests.fault_g1_sender DOMAIN {arm_sdk|lowcmd} JOINT TARGET_RAD MODE_MACHINE BAD_CRC(0|1) COUNT
"""

from __future__ import annotations

import sys
import time

from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_

from surgbot import contract
from surgbot.hw import unitree, unitree_codec

BAD_CRC = 0xDEADBEEF
PERIOD_S = 0.002


def main(argv: list[str]) -> int:
    domain, topic, joint, target, mode_machine, bad_crc, count = argv
    unitree.init_channel(int(domain), "lo")
    name = contract.G1_TOPIC_ARM_SDK if topic == "arm_sdk" else contract.G1_TOPIC_LOWCMD
    writer = unitree.RawWriter(unitree.participant(), name, LowCmd_)
    time.sleep(0.5)                                   # discovery
    cmd = unitree_codec.new_lowcmd()
    cmd["mode_machine"] = int(mode_machine)
    mc = cmd["motor_cmd"]
    j = int(joint)
    mc["mode"][j], mc["q"][j], mc["kp"][j], mc["kd"][j] = 1, float(target), 200.0, 5.0
    mc["q"][contract.G1_ARM_SDK_WEIGHT_INDEX] = 1.0
    bad = bad_crc == "1"
    if bad:
        cmd["crc"] = BAD_CRC
    data = unitree_codec.encode_lowcmd(cmd, set_crc=not bad)
    for _ in range(int(count)):
        writer.write(data)
        time.sleep(PERIOD_S)
    print(f"sent {count} {topic} samples (mode_machine {mode_machine}, bad crc {bad})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
