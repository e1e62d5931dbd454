"""ament_pep257 docstring conventions; skipped where ament_pep257 is not installed."""

import pytest

main = pytest.importorskip(
    "ament_pep257.main", reason="ament_pep257 (ROS 2) is not installed"
).main


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    assert main(argv=[".", "test"]) == 0, "found docstring style errors"
