"""``arm-data``: ShapesWorld export, pre-tokenization, and the registry listing."""

from __future__ import annotations

import sys

from arm_tokenizer.cli_base import ExtraCommand, run_cli

EXTRA_COMMANDS: dict[str, ExtraCommand] = {}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-data", argv, EXTRA_COMMANDS, trainable=False,
                     description="ARM data: ShapesWorld, real datasets, text tokenizer, shards"))


if __name__ == "__main__":
    main()
