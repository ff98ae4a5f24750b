"""Build the ember_msgs interface package and install it into this Python environment (the virtualenv).

`make install` runs it. It uses the ROS 2 Kilted build wheels (ament_cmake, rosidl generators) that
pip installed into the environment, with the system's cmake and C/C++ compiler, and installs with
CMAKE_INSTALL_PREFIX = the environment, so `import ember_msgs` works there with no environment
variables. The wheels' `*__rosidl_generator_pyExport.cmake` files name the include directories of
the machine they were built on (Python's and numpy's); they are first pointed at this interpreter's.
A colcon workspace builds ember_msgs its own way (see the README).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "ember_msgs"
_INCLUDES = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES ")([^"]*)(")')


def fix_python_includes(prefix: Path) -> int:
    """Point the wheels' Python-generator exports at this interpreter's include directories; how many changed."""
    import numpy

    ours = f"{sysconfig.get_paths()['include']};{numpy.get_include()}"
    changed = 0
    for path in sorted((prefix / "share").glob("*/cmake/*__rosidl_generator_pyExport.cmake")):
        text = path.read_text(encoding="utf-8")
        fixed = _INCLUDES.sub(lambda m: m[1] + ours + m[3] if "python" in m[2] else m[0], text)
        if fixed != text:
            path.write_text(fixed, encoding="utf-8")
            changed += 1
    return changed


def build(prefix: Path, build_dir: Path, jobs: int) -> None:
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix), "CMAKE_PREFIX_PATH": str(prefix)}
    python = Path(sys.executable)
    steps = (
        ["cmake", "-S", str(SOURCE), "-B", str(build_dir), f"-DCMAKE_INSTALL_PREFIX={prefix}",
         f"-DCMAKE_PREFIX_PATH={prefix}", f"-DPython3_EXECUTABLE={python}", "-DBUILD_TESTING=OFF",
         "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build_dir), "--parallel", str(jobs)],
        ["cmake", "--install", str(build_dir)],
    )
    for step in steps:
        print("+", " ".join(step), flush=True)
        subprocess.run(step, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "ember_msgs",
                        help="cmake build directory (default: build/ember_msgs)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel build jobs")
    args = parser.parse_args(argv)
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):
        parser.error("run this with the virtualenv's python (e.g. .venv/bin/python); it installs into that environment")
    print(f"pointed {fix_python_includes(prefix)} rosidl Python export file(s) at this interpreter's include directories")
    build(prefix, args.build_dir, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
