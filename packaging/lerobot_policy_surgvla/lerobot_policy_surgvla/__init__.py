"""LeRobot plugin entry: importing it registers policy type `surgvla` (see ../setup.py)."""

from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig
from surgbot.policies.vla.modeling_surgvla import SurgVLAPolicy
from surgbot.policies.vla.processor_surgvla import make_surgvla_pre_post_processors

__all__ = ["SurgVLAConfig", "SurgVLAPolicy", "make_surgvla_pre_post_processors"]
