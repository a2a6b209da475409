"""No import cycle among arm_data modules; each function-local import says why (issue 32)."""
import arm_data
from arm_tokenizer.testing.import_layout import check_import_layout


def test_arm_data_import_layout():
    check_import_layout(arm_data, "arm_data.tasks.registry", min_modules=41)
