"""The ROS 2 package, checked without ROS: rclpy-free library, package metadata, launch file, colcon build."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edge_geoloc.interop.params import NodeSettings, parameter_specs

REPO = Path(__file__).resolve().parents[1]
WS = REPO / "ros2_ws"
PKG = WS / "src" / "edge_geoloc_ros"
ROS_ONLY = ("rclpy", "rcl_interfaces", "launch", "launch_ros", "sensor_msgs", "std_msgs", "std_srvs",
            "geometry_msgs", "diagnostic_msgs", "builtin_interfaces")


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_library_never_imports_rclpy_or_ros_message_packages():
    offenders = {str(p.relative_to(REPO)): sorted(imported_roots(p) & set(ROS_ONLY))
                 for folder in ("edge_geoloc", "export") for p in (REPO / folder).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_interop_and_replay_import_with_ros_blocked():
    """Import the ROS-facing library modules in a fresh interpreter where any ROS import fails."""
    code = (
        "import sys, importlib.abc\n"
        f"BLOCK = {ROS_ONLY!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in BLOCK: raise ImportError('ROS import: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import edge_geoloc.interop, edge_geoloc.interop.replay_bag, edge_geoloc.interop.build\n"
        "import edge_geoloc.interop.params, edge_geoloc.fieldlog.switch, edge_geoloc.interop.outputs\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in BLOCK]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_node_package_is_the_one_place_that_imports_rclpy():
    assert "rclpy" in imported_roots(PKG / "edge_geoloc_ros" / "node.py")


def test_package_xml_format_3_ament_python_with_runtime_and_test_deps():
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "edge_geoloc_ros"
    assert root.find("export/build_type").text == "ament_python"
    exec_deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "geometry_msgs", "diagnostic_msgs", "std_srvs", "launch_ros"} <= exec_deps
    assert {"launch_testing", "launch_testing_ros", "python3-pytest"} <= {e.text for e in root.findall("test_depend")}
    assert "rosbag2_storage_mcap" in exec_deps  # Humble's ros2 bag has no MCAP plugin unless it is installed
    node_imports = imported_roots(PKG / "edge_geoloc_ros" / "node.py") | imported_roots(
        PKG / "edge_geoloc_ros" / "parameters.py")
    missing = (node_imports & set(ROS_ONLY)) - exec_deps
    assert missing == set(), f"package.xml lacks exec_depend for {missing}"


def test_setup_py_installs_marker_launch_config_and_entry_point():
    text = (PKG / "setup.py").read_text()
    assert (PKG / "resource" / "edge_geoloc_ros").is_file()
    for needle in ("share/ament_index/resource_index/packages", "launch/*.launch.py", "config/*.yaml",
                   "geoloc_node = edge_geoloc_ros.node:main", 'extras_require={"test": ["pytest"]}'):
        assert needle in text, needle
    assert "install_scripts=$base/lib/edge_geoloc_ros" in (PKG / "setup.cfg").read_text()


def test_ros_constraints_keep_numpy_1_and_the_docs_use_them():
    """Humble's message typesupport is built against numpy 1.x: the ROS install path must not pull numpy 2."""
    from packaging.requirements import Requirement

    lines = [ln.split("#")[0].strip() for ln in (WS / "constraints-humble.txt").read_text().splitlines()]
    numpy = next(Requirement(ln) for ln in lines if ln.startswith("numpy"))
    assert "1.26.4" in numpy.specifier and "2.0.0" not in numpy.specifier
    docs = (REPO / "docs" / "ros2.md").read_text()
    assert "-c ros2_ws/constraints-humble.txt" in docs and "python3 -m colcon build" in docs


def node_settings_attributes(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "settings"} | {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                                              and isinstance(n.value, ast.Name) and n.value.id == "s"}


def test_node_reads_only_settings_that_exist():
    """The node cannot run here, so a typo in a settings name would only show on the robot."""
    used = node_settings_attributes(PKG / "edge_geoloc_ros" / "node.py")
    assert used and used <= set(NodeSettings.__dataclass_fields__), used - set(NodeSettings.__dataclass_fields__)


def string_calls(path: Path, method: str) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.args[1].value for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "")
            == method and len(n.args) > 1 and isinstance(n.args[1], ast.Constant)}


def test_launch_remaps_every_input_and_restates_no_parameter():
    launch_text = (PKG / "launch" / "geoloc.launch.py").read_text()
    tree = ast.parse(launch_text)
    remapped = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and n.targets[0].id == "REMAPPED_TOPICS")
    subscribed = string_calls(PKG / "edge_geoloc_ros" / "node.py", "create_subscription")
    assert subscribed == {"image", "image/compressed", "gnss/fix", "gnss/vel", "heading", "imu", "altitude_agl",
                          "camera_info"}
    assert subscribed <= set(remapped)
    restated = [s.name for s in parameter_specs() if s.name in launch_text]
    assert restated == [], f"launch file restates parameters {restated}; they belong in params.yaml"
    assert "params.yaml" in launch_text


def test_launch_description_builds_where_launch_is_installed():
    pytest.importorskip("launch_ros", reason="launch_ros (ROS 2) is not installed here")
    import importlib.util

    spec = importlib.util.spec_from_file_location("geoloc_launch", PKG / "launch" / "geoloc.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities


def _colcon() -> str | None:
    return shutil.which("colcon") or next((str(p) for p in [Path(sys.executable).parent / "colcon"] if p.exists()),
                                          None)


@pytest.mark.skipif(_colcon() is None, reason="colcon is not installed (pip install colcon-common-extensions)")
def test_colcon_build_installs_the_package(tmp_path):
    cmd = [_colcon(), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(WS / "src"),
           "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "edge_geoloc_ros"
    share = prefix / "share" / "edge_geoloc_ros"
    for path in (share / "package.xml", share / "launch" / "geoloc.launch.py", share / "config" / "params.yaml",
                 prefix / "share" / "ament_index" / "resource_index" / "packages" / "edge_geoloc_ros",
                 prefix / "lib" / "edge_geoloc_ros" / "geoloc_node"):
        assert path.is_file(), f"colcon did not install {path.relative_to(tmp_path)}"
    script = (prefix / "lib" / "edge_geoloc_ros" / "geoloc_node").read_text().splitlines()[0]
    assert script == "#!/usr/bin/env python3", f"the console script runs {script}, not the venv's python3"
    site = next(prefix.glob("lib/python3*/site-packages/edge_geoloc_ros/node.py"))
    assert site.read_text() == (PKG / "edge_geoloc_ros" / "node.py").read_text()
    assert not list((WS / "src").rglob("*.egg-info")), "colcon build left files in the source tree"
