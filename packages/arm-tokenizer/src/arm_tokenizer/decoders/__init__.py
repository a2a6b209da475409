"""Decoders: de-quantized tokens back to pixels (``arm.decoders``) and the VAE interface (``arm.vaes``).

- :mod:`.base`: the :class:`~arm_tokenizer.decoders.base.Decoder` contract.
- :mod:`.conv`: ``conv_decoder``, a fast convolutional decoder.
- :mod:`.dit`: the DiT backbone and the rectified-flow decoder base (N-step Euler sampler, CFG).
- :mod:`.pixel_dit`: ``pixel_dit``, ARM's Pixel DiT (flow matching in pixel space).
- :mod:`.latent_dit`: ``latent_dit``, flow matching over a frozen VAE's latents.
- :mod:`.vae`: the ``VAE`` interface and ``small_vae`` (trained by ``vae_trainer``).
- :mod:`.lightning_module`: ``VAETrainer`` (model ``vae_trainer``), which trains a VAE for
  ``latent_dit`` (each (sub)package keeps its LightningModule in ``lightning_module.py``).

Submodules are imported on demand (the registry imports a class only when it is used).
"""
