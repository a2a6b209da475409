"""``arm-tokenizer``: train, list and describe tokenizer components; encode/decode images."""

from __future__ import annotations

import sys

from arm_tokenizer.cli_base import ExtraCommand, run_cli

# codec_cli is light at import time: torch and the model load inside the commands.
from arm_tokenizer.codec_cli import decode_command, encode_command

# Package-specific subcommands; each takes argv and returns an exit status.
EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "encode": encode_command,
    "decode": decode_command,
}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-tokenizer", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM semantic visual tokenizer"))


if __name__ == "__main__":
    main()
