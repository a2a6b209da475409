"""``arm-rl``: GRPO-family RL for text-to-image and editing."""

from __future__ import annotations

import os
import sys

from arm_tokenizer.framework.cli_base import ExtraCommand, lazy_command, run_cli

EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "staged": lazy_command("arm_rl.recipes:cli_staged",
                           "Run a staged RL recipe (T2I -> Edit -> Joint), each stage from the last export"),
    "judge-agreement": lazy_command("arm_rl.recipes:cli_judge_agreement",
                                    "Agreement of the self-judge with the rule-based T2I evaluator"),
}

PROG = "arm-rl"


def run(argv: list[str] | None = None) -> int:
    """``arm-rl`` with ``argv``; returns the exit status.

    On top of the errors :func:`~arm_tokenizer.framework.cli_base.run_cli` reports (bad configs,
    unknown components, reward and reference errors: one line, status 2), an
    :class:`arm_rl.lightning_module.RLNumericsError` (a non-finite loss or gradient; its message
    names the batch, task, reward and suspects) is reported the same way instead of as a
    traceback. ``--debug`` / ``ARM_DEBUG=1`` re-raise it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ARM_DEBUG") == "1"
    if argv and argv[0] in ("fit", "validate", "test", "predict"):
        # `--trainer.strategy=fsdp2` (FSDP2 for the policy, arm_rl.fsdp)
        from arm_rl.fsdp import (
            register_fsdp2,  # deferred: torch and Lightning, for training subcommands only
        )

        register_fsdp2()
    try:
        return run_cli(PROG, argv, EXTRA_COMMANDS, trainable=True,
                       description="ARM reinforcement learning (GRPO family)")
    except FloatingPointError as exc:
        # RLNumericsError is a FloatingPointError; it can only be raised once the trainer
        # module is imported, so importing it here costs nothing (and `list` never pays).
        # deferred: lightning_module imports lightning (seconds); `arm-rl --help` stays fast
        from arm_rl.lightning_module import RLNumericsError

        if debug or not isinstance(exc, RLNumericsError):
            raise
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: RL numerics: {message}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
