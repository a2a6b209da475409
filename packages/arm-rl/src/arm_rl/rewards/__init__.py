"""RL rewards (kind ``reward``, entry-point group ``arm.rewards``); see :mod:`arm_rl.rewards.base`."""

from arm_rl.rewards.base import Reward, RewardError, as_pil, as_tensor

__all__ = ["Reward", "RewardError", "as_pil", "as_tensor"]
