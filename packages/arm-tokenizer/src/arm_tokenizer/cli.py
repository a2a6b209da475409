"""``arm-tokenizer``: train, list and describe tokenizer components; encode/decode images."""

from __future__ import annotations

import sys

# codec_cli is light at import time: torch and the model load inside the commands.
from arm_tokenizer.codec_cli import decode_command, encode_command
from arm_tokenizer.framework.cli_base import ExtraCommand, lazy_command, run_cli

# Package-specific subcommands; each takes argv and returns an exit status.
EXTRA_COMMANDS: dict[str, ExtraCommand] = {
    "encode": encode_command,
    "decode": decode_command,
    "evaluate": lazy_command("arm_tokenizer.evaluate:evaluate_command",
                             "Every figure of a tokenizer on any image data: PSNR, SSIM, LPIPS, rFID, "
                             "codebook, zero-shot, retrieval."),
}


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_cli("arm-tokenizer", argv, EXTRA_COMMANDS, trainable=True,
                     description="ARM semantic visual tokenizer\n\n"
                                 "Score an export: `evaluate --tokenizer DIR --data PATH --out FILE.json` (any image\n"
                                 "folder/JSONL/WebDataset, every figure), or `validate --config X.yaml\n"
                                 "--model.init_from DIR` (the config's validation data and losses)."))


if __name__ == "__main__":
    main()
