"""Test helper: prints SURGBOT_REALTIME_PRIORITY as its process sees it ("unset" if absent)."""
import os

from surgbot.processes import REALTIME_ENV

print(os.environ.get(REALTIME_ENV, "unset"), flush=True)
