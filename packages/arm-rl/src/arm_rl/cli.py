"""``arm-rl``: GRPO-family RL for text-to-image and editing."""

from __future__ import annotations

import sys

from arm_tokenizer.cli_base import ExtraCommand, lazy_command, run_cli

EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "staged": lazy_command("arm_rl.recipes:cli_staged",
                           "Run a staged RL recipe (T2I -> Edit -> Joint), each stage from the last export"),
    "judge-agreement": lazy_command("arm_rl.recipes:cli_judge_agreement",
                                    "Agreement of the self-judge with the rule-based T2I evaluator"),
}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-rl", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM reinforcement learning (GRPO family)"))


if __name__ == "__main__":
    main()
