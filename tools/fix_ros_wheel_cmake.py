#!/usr/bin/env python3
"""Point the ROS 2 PyPI wheels' exported CMake files at this interpreter's headers.

The ``ros-*`` wheels are built in a manylinux container, and their exported
``export_*__rosidl_generator_pyExport.cmake`` files keep that container's Python and
numpy include directories (``/opt/python/cp312-cp312/...``).  Any package that calls
``rosidl_generate_interfaces`` against them then fails at configure time with
"includes non-existent path".  This rewrites those paths to the running interpreter's
include directory and numpy's, and is idempotent: run it after every ``pip install`` of
a ``ros-*`` message wheel, before building our interfaces.
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from pathlib import Path

# The container paths look like /opt/python/cp312-cp312/include/python3.12 and
# /opt/python/cp312-cp312/lib/python3.12/site-packages/numpy/_core/include.
_NUMPY_INCLUDE = re.compile(r"/opt/python/cp\d+-cp\d+t?/lib/python[\d.]+t?/site-packages/numpy/(?:_core|core)/include")
_PYTHON_INCLUDE = re.compile(r"/opt/python/cp\d+-cp\d+t?/include/python[\d.]+t?")


def fix_file(path: Path, python_include: str, numpy_include: str) -> bool:
    """Rewrite one CMake file in place; return True when it changed."""
    text = path.read_text(encoding="utf-8")
    fixed = _NUMPY_INCLUDE.sub(numpy_include, text)
    fixed = _PYTHON_INCLUDE.sub(python_include, fixed)
    if fixed == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(fixed, encoding="utf-8")
    tmp.replace(path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default=sys.prefix, help="install prefix holding share/*/cmake (default: this venv)")
    args = parser.parse_args(argv)

    import numpy  # imported here so --help works without numpy

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    if not Path(python_include, "Python.h").is_file():
        print(f"fix_ros_wheel_cmake: no Python.h in {python_include}; install the Python development headers "
              "(Debian/Ubuntu: apt-get install python3-dev)", file=sys.stderr)
        return 1

    share = Path(args.prefix) / "share"
    changed = [p for p in sorted(share.glob("*/cmake/*.cmake")) if fix_file(p, python_include, numpy_include)]
    print(f"fix_ros_wheel_cmake: fixed {len(changed)} file(s) under {share} "
          f"(python include {python_include}, numpy include {numpy_include})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
