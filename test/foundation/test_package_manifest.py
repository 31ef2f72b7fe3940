"""package.xml is a valid format-3 manifest and declares what the code imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]

# import name -> package.xml key (ROS package name or rosdep key)
IMPORT_TO_DEPEND = {
    "rclpy": "rclpy", "std_msgs": "std_msgs", "std_srvs": "std_srvs", "sensor_msgs": "sensor_msgs", "geometry_msgs": "geometry_msgs",
    "builtin_interfaces": "builtin_interfaces", "visualization_msgs": "visualization_msgs",
    "diagnostic_msgs": "diagnostic_msgs", "lifecycle_msgs": "lifecycle_msgs", "action_msgs": "action_msgs",
    "rosgraph_msgs": "rosgraph_msgs", "tf2_msgs": "tf2_msgs", "rcl_interfaces": "rcl_interfaces", "ament_index_python": "ament_index_python",
    "ros3d_agent_interfaces": "ros3d_agent_interfaces",
    "numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv", "yaml": "python3-yaml",
    "PIL": "python3-pil", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "torch": "python3-pytorch-pip", "transformers": "python3-transformers-pip", "diffusers": "python3-diffusers-pip",
    "accelerate": "python3-accelerate-pip", "peft": "python3-peft-pip", "safetensors": "python3-safetensors-pip", "tokenizers": "python3-tokenizers-pip",
    "open3d": "python3-open3d-pip", "rosbags": "python3-rosbags-pip", "transforms3d": "python3-transforms3d", "pycocoevalcap": "python3-pycocoevalcap-pip", "mcap": "python3-mcap-pip",
}
OWN = {"ros3d_agent", "training"}


def _imported_top_levels() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for base in ("ros3d_agent", "training"):
        for path in (ROOT / base).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN and top != "__future__":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_manifest_is_valid_format_3_ament_python():
    pkg = parse_package(str(ROOT))
    pkg.validate()
    assert pkg.package_format == 3
    assert pkg.name == "ros3d_agent"
    assert pkg.get_build_type() == "ament_python"
    assert (ROOT / "resource" / "ros3d_agent").is_file()


def test_interface_manifest_is_valid_format_3():
    pkg = parse_package(str(ROOT / "interfaces" / "ros3d_agent_interfaces"))
    pkg.validate()
    assert pkg.package_format == 3 and pkg.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in pkg.member_of_groups]


def test_every_third_party_import_is_declared():
    pkg = parse_package(str(ROOT))
    declared = {d.name for d in pkg.exec_depends + pkg.build_depends + pkg.build_export_depends}
    unknown, missing = {}, {}
    for top, files in _imported_top_levels().items():
        key = IMPORT_TO_DEPEND.get(top)
        if key is None:
            unknown[top] = sorted(files)
        elif key not in declared:
            missing[key] = sorted(files)
    assert not unknown, f"imports with no package.xml mapping (add to IMPORT_TO_DEPEND and package.xml): {unknown}"
    assert not missing, f"package.xml lacks <exec_depend> for: {missing}"
