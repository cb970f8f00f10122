"""The probe (needle_loc.py) on the first N training layouts only (3000 .. 3000+N-1); validation unchanged.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/probe_needle_localisation/fewer_layouts.py 96x128 3000 out.json 200
"""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("needle_loc", Path(__file__).with_name("needle_loc.py"))
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)
first_n = int(sys.argv[4])
all_frames = probe.frames


def fewer(seeds, h, w):
    seeds = list(seeds)
    return all_frames(seeds[:first_n] if seeds[0] == 3000 else seeds, h, w)


probe.frames = fewer
sys.argv = sys.argv[:4]
probe.main()
