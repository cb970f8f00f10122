"""A unitree-style G1 low-level program, written only against unitree_sdk2py.

Mirrors the flow of Unitree's own G1 low-level example: ask the
`motion_switcher` service which mode runs (CheckMode) and release it
(ReleaseMode) until none is active, read `rt/lowstate`, then stream
`rt/lowcmd` at 500 Hz with `mode_machine` echoed from the robot and the CRC
set, moving one joint smoothly from where it is to a target while holding
the others.  Used by tests/test_g1_twin.py to show the twin is driven by the
SDK exactly like the robot; prints one JSON line with what lowstate reported.

    python examples/g1_low_level.py --domain 1 --joint 12 --target 0.3
"""

import argparse
import json
import sys
import threading
import time

from unitree_sdk2py.comm.motion_switcher.motion_switcher_client import MotionSwitcherClient
from unitree_sdk2py.core.channel import ChannelFactoryInitialize, ChannelPublisher, ChannelSubscriber
from unitree_sdk2py.idl.default import unitree_hg_msg_dds__LowCmd_
from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_, LowState_
from unitree_sdk2py.utils.crc import CRC

NUM_JOINTS = 29
KP = [60, 60, 60, 100, 40, 40] * 2 + [60, 40, 40] + [40] * 14
KD = [1, 1, 1, 2, 1, 1] * 2 + [1, 1, 1] + [1] * 14


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domain", type=int, default=1)
    ap.add_argument("--interface", default="lo")
    ap.add_argument("--joint", type=int, default=12)
    ap.add_argument("--target", type=float, default=0.3)
    ap.add_argument("--move-time", type=float, default=2.0)
    ap.add_argument("--hold-time", type=float, default=1.5)
    ap.add_argument("--select-after", action="store_true", help="SelectMode('ai') at the end")
    args = ap.parse_args()

    ChannelFactoryInitialize(args.domain, args.interface)

    msc = MotionSwitcherClient()
    msc.SetTimeout(5.0)
    msc.Init()
    status, result = msc.CheckMode()
    first_mode = result["name"] if result else None
    deadline = time.time() + 15
    while result and result["name"] and time.time() < deadline:
        msc.ReleaseMode()
        status, result = msc.CheckMode()
        time.sleep(1)
    if status != 0 or result is None or result["name"]:
        print(json.dumps({"error": f"could not release the motion mode ({status}, {result})"}))
        return 1

    latest = {}
    lock = threading.Lock()

    def on_state(msg: LowState_):
        with lock:
            latest["msg"] = msg

    sub = ChannelSubscriber("rt/lowstate", LowState_)
    sub.Init(on_state, 10)
    pub = ChannelPublisher("rt/lowcmd", LowCmd_)
    pub.Init()
    crc = CRC()

    t_wait = time.time() + 10
    while "msg" not in latest and time.time() < t_wait:
        time.sleep(0.01)
    if "msg" not in latest:
        print(json.dumps({"error": "no rt/lowstate"}))
        return 1
    with lock:
        st = latest["msg"]
    q_start = [st.motor_state[i].q for i in range(NUM_JOINTS)]
    mode_machine = st.mode_machine

    cmd = unitree_hg_msg_dds__LowCmd_()
    dt = 0.002
    t0 = time.time()
    total = args.move_time + args.hold_time
    nxt = t0
    while time.time() - t0 < total:
        s = min(1.0, (time.time() - t0) / args.move_time)
        cmd.mode_pr = 0
        cmd.mode_machine = mode_machine
        for i in range(NUM_JOINTS):
            q = q_start[i]
            if i == args.joint:
                q = (1 - s) * q_start[i] + s * args.target
            m = cmd.motor_cmd[i]
            m.mode, m.q, m.dq, m.tau, m.kp, m.kd = 1, q, 0.0, 0.0, KP[i], KD[i]
        cmd.crc = crc.Crc(cmd)
        pub.Write(cmd)
        nxt += dt
        time.sleep(max(0.0, nxt - time.time()))

    with lock:
        st = latest["msg"]
    out = {"first_mode": first_mode, "mode_machine": mode_machine, "joint": args.joint,
           "q_start": q_start[args.joint], "q_final": st.motor_state[args.joint].q,
           "q_all": [st.motor_state[i].q for i in range(NUM_JOINTS)], "q_start_all": q_start,
           "lowstate_crc_ok": crc.Crc(st) == st.crc}
    if args.select_after:
        out["select"] = msc.SelectMode("ai")[0]
        out["mode_after"] = msc.CheckMode()[1]
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
