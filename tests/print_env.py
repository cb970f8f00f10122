"""Test helper: prints SURGBOT_REALTIME_PRIORITY and SURGBOT_GROUP_NICE as its process sees them,
as one word "REALTIME,SHARE" ("unset" for an absent one)."""
import os

from surgbot.processes import REALTIME_ENV, SHARE_ENV

print(",".join(os.environ.get(name, "unset") for name in (REALTIME_ENV, SHARE_ENV)), flush=True)
