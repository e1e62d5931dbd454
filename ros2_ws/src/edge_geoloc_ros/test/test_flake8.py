"""ament_flake8 over the package (ROS 2 code style); skipped without ament_flake8."""

import pytest

main_with_errors = pytest.importorskip(
    "ament_flake8.main", reason="ament_flake8 (ROS 2) is not installed"
).main_with_errors


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = main_with_errors(argv=[])
    assert rc == 0, f"{len(errors)} code style error(s):\n" + "\n".join(errors)
