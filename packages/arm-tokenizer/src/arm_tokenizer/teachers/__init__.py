"""Frozen teachers for the semantic losses (ARM's SigLIP2 text tower and captioning LLM).

- :mod:`~arm_tokenizer.teachers.base`: the interfaces ``TextEncoder`` / ``CaptionLM``;
- :mod:`~arm_tokenizer.teachers.lightning_module`: ``TeacherTrainer`` (model ``teacher_trainer``), which
  trains a small SigLIP-style dual encoder and a captioning LM on image–caption batches;
- :mod:`~arm_tokenizer.teachers.frozen`: the teacher directory format and the frozen loaders
  ``TeacherTextEncoder`` (``teacher_text``) and ``TeacherCaptionLM`` (``teacher_caption_lm``);
- :mod:`~arm_tokenizer.teachers.modules`, :mod:`~arm_tokenizer.teachers.spm`: the networks
  and the sentencepiece vocabulary; :mod:`~arm_tokenizer.teachers.toy`: a tiny teacher for tests.

Submodules are imported on demand (importing this package does not pull in timm).
"""
