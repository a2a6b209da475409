"""The teacher dual encoder sees images at the size the teacher was trained at."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from arm_rl.rewards.alignment import TeacherDualEncoder
from arm_tokenizer.teachers.directory import read_teacher_config
from arm_tokenizer.teachers.toy import toy_teacher_dir


def test_teacher_dual_encoder_defaults_to_the_teachers_image_size():
    d = toy_teacher_dir()
    native = int(read_teacher_config(d)["image_tower"]["image_size"])
    assert native != 64          # the old fixed default, so the test tells the two apart
    enc = TeacherDualEncoder(d)
    assert enc.image_size == native
    x = torch.rand(2, 3, native, native) * 2 - 1
    with torch.no_grad():
        want = enc.text.embed_image_tokens(enc.tower(x))
    torch.testing.assert_close(enc.embed_images(x), want)
    # other sizes are resized to the native one; an explicit size still wins
    big = F.interpolate(x, size=(2 * native, 2 * native), mode="nearest")
    torch.testing.assert_close(enc.embed_images(big), want, rtol=1e-4, atol=1e-4)
    assert TeacherDualEncoder(d, image_size=2 * native).image_size == 2 * native
