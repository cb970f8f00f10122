import os
import sys
import time
from pathlib import Path

from surgbot.policies.data.record import record_expert
from surgbot.policies.video.generate import generate_sim

task = sys.argv[1]
work = Path(os.environ.get("W", "out/idm_tried"))
t0 = time.time()
out = work / f"real_{task}"
if not out.exists():
    generate_sim(task, 8, out, seed=100000, image_size=(128, 128), shift="none", progress=False)
print("real", time.time() - t0, flush=True)
out = work / f"train_{task}"
if not out.exists():
    record_expert(task, 15, out, seed=1000, image_size=(128, 128), progress=False)
print("train", time.time() - t0, flush=True)
