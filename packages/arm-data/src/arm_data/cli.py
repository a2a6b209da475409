"""``arm-data``: ShapesWorld export, pre-tokenization, and the registry listing."""

from __future__ import annotations

import sys

from arm_tokenizer.framework.cli_base import ExtraCommand, lazy_command, run_cli

# Imported only when the subcommand runs.
EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "shapes": lazy_command("arm_data.shapes.cli:shapes_command",
                           "ShapesWorld: export splits, show samples, evaluate images"),
    "pretokenize": lazy_command("arm_data.pretokenize:cli_main",
                                "run a visual tokenizer over a dataset into token shards"),
    "train-text-tokenizer": lazy_command("arm_data.text_tokenizer:train_text_tokenizer_command",
                                         "train the sentencepiece text tokenizer"),
    "check": lazy_command("arm_data.datasets.check:check_command",
                          "scan a dataset and report bad samples"),
}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-data", argv, EXTRA_COMMANDS, trainable=False,
                     description="ARM data: ShapesWorld, real datasets, text tokenizer, shards"))


if __name__ == "__main__":
    main()
