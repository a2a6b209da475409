"""The framework every ARM package builds on: register, configure, run a CLI, save and load.

- :mod:`.registry`: kinds, entry-point discovery, ``list_components`` / ``create``;
- :mod:`.configurable`: init-args capture, ``get_config`` / ``instantiate``;
- :mod:`.config_check`: registry names in YAML translated and checked before parsing;
- :mod:`.cli_base`, :mod:`.lightning_cli`: the shared command line and LightningCLI;
- :mod:`.weights_preflight`, :mod:`.hub`: fail fast when pretrained weights are missing;
- :mod:`.checkpoint`: ``model.safetensors`` + ``config.json`` directories, atomic writes;
- :mod:`.hparams`, :mod:`.progress`: what every LightningModule and run shares;
- :mod:`.deprecation`: aliases for moved names and moved modules.

The tokenizer itself (encoders, quantizers, decoders, losses) lives beside this package.
Submodules are imported on demand: importing ``arm_tokenizer.framework`` loads nothing else.
"""
