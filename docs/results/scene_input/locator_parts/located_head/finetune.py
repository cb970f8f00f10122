"""`surgbot policy train` continued from a bound action head's weights and processors (BOUND), each episode's scene
summary read from ROWS/<dataset folder name>.npy (rows.py) instead of the simulator's.

    python finetune.py BOUND ROWS [policy train arguments ...]
"""
import sys
from pathlib import Path

import numpy as np

import surgbot.policies.vla.train as T
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy

bound_path, rows = sys.argv[1], Path(sys.argv[2])
bound = SurgVLAPolicy.from_pretrained(bound_path)
make_processors = T.make_pre_post_processors
T._scene_rows = lambda root: np.load(rows / f"{Path(root).name}.npy")
T.make_policy = lambda cfg, ds_meta=None: bound
# the bound's own normalisation: processors made from these datasets' stats shift every input (l1 0.55 instead of
# 0.034 on the first batches)
T.make_pre_post_processors = lambda cfg, dataset_stats=None, **kw: make_processors(bound.config,
                                                                                   pretrained_path=bound_path)
sys.exit(T.main(sys.argv[3:]))
