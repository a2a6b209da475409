"""No import cycle among arm_core modules; each function-local import says why (issue 32)."""
import arm_core
from arm_tokenizer.testing.import_layout import check_import_layout


def test_arm_core_import_layout():
    check_import_layout(arm_core, "arm_core.pipelines", min_modules=31)
