"""``arm-lm``: train and run the ARM autoregressive LM."""

from __future__ import annotations

import sys

from arm_tokenizer.cli_base import ExtraCommand, run_cli

EXTRA_COMMANDS: dict[str, ExtraCommand] = {}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-lm", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM autoregressive multimodal LM"))


if __name__ == "__main__":
    main()
