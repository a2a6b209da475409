"""No import cycle among arm_rl modules; each function-local import says why (issue 32)."""
import arm_rl
from arm_tokenizer.testing.import_layout import check_import_layout


def test_arm_rl_import_layout():
    check_import_layout(arm_rl, "arm_rl.rollout", min_modules=13)
