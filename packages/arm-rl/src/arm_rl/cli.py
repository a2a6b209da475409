"""``arm-rl``: GRPO-family RL for text-to-image and editing."""

from __future__ import annotations

import sys

from arm_tokenizer.cli_base import ExtraCommand, run_cli

EXTRA_COMMANDS: dict[str, ExtraCommand] = {}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-rl", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM reinforcement learning (GRPO family)"))


if __name__ == "__main__":
    main()
