"""``arm-lm``: train and run the ARM autoregressive LM."""

from __future__ import annotations

import sys

from arm_tokenizer.framework.cli_base import ExtraCommand, run_cli


def _generate(argv: list[str]) -> int:
    """Generate images (t2i, edit) or answers (understand) with an exported LM."""
    # deferred: torch loads when the command runs (`arm-lm --help` stays fast)
    from arm_core.pipelines import cli_generate

    return cli_generate(argv)


def _evaluate(argv: list[str]) -> int:
    """Evaluate an LM on ShapesWorld or your own data (loss, VQA, T2I alignment) to JSON."""
    # deferred: torch loads when the command runs (`arm-lm --help` stays fast)
    from arm_core.evaluate import cli_evaluate

    return cli_evaluate(argv)


def _suite(argv: list[str]) -> int:
    """Benchmark suites (GenEval, DPG, WISE, GEdit, ImgEdit, shapes): generate, score."""
    # deferred: torch loads when the command runs (`arm-lm --help` stays fast)
    from arm_core.suites.cli import cli_suite

    return cli_suite(argv)


EXTRA_COMMANDS: dict[str, ExtraCommand] = {"generate": _generate, "evaluate": _evaluate}
EXTRA_COMMANDS["suite"] = _suite


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-lm", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM autoregressive multimodal LM"))


if __name__ == "__main__":
    main()
