"""Ember installs as one ament_python package: pip (non-editable) and colcon lay out share/ember_ros."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO
from ember_core.paths import share_dir

PY_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
SHARE_FILES = ["package.xml", "robots.yaml", "config/selector.yaml", "launch/selector.launch.py"]
EXECUTABLES = ["ember", "selector", "demo_camera", "fleet_listener"]
ANCHOR = "share/ament_index/resource_index/packages/ember_ros"


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The repository's files without build outputs, so installs never write into the checkout."""
    target = tmp_path_factory.mktemp("src") / "ember_ros"
    ignore = shutil.ignore_patterns(".git", ".venv*", "build", "install", "log", "*.egg-info", "__pycache__", ".pytest_cache")
    shutil.copytree(REPO, target, ignore=ignore)
    return target


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for an installed copy: no checkout on the path, no robots.yaml override."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EMBER_ROBOTS", "AMENT_PREFIX_PATH")}
    env.update(extra)
    return env


def run_installed(executable: Path, site_packages: Path, cwd: Path, *args: str) -> str:
    env = clean_env(PYTHONPATH=str(site_packages))
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, str(executable), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_checkout_is_its_own_share_dir():
    assert share_dir() == REPO


def test_pip_install_lays_out_share_and_ament_index(source_copy, tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--ignore-installed", "--no-deps", "--no-build-isolation", "--prefix", str(prefix), "."],
        cwd=source_copy, check=True, capture_output=True, text=True,
    )
    for name in SHARE_FILES:
        assert (prefix / "share/ember_ros" / name).is_file(), name
    assert (prefix / ANCHOR).is_file()
    scripts = Path(sysconfig.get_path("scripts", vars={"base": str(prefix)}))
    site_packages = prefix / "lib" / PY_DIR / "site-packages"

    find_share = "from ament_index_python.packages import get_package_share_directory as g; print(g('ember_ros'))"
    result = subprocess.run([sys.executable, "-c", find_share], env=clean_env(AMENT_PREFIX_PATH=str(prefix)),
                            capture_output=True, text=True, check=True)
    assert Path(result.stdout.strip()) == prefix / "share/ember_ros"

    out = run_installed(scripts / "ember", site_packages, tmp_path, "robots", "validate")
    assert out.startswith(f"OK {prefix / 'share/ember_ros/robots.yaml'}: 5 robots")
    # The model package, its packaged tokenizer and the selection schema are installed too.
    for name in ("ember_core/model/vlm.py", "ember_core/assets/tokenizer/tokenizer.json",
                 "ember_core/schemas/selection.schema.json", "ember_plugins/drone.py"):
        assert (site_packages / name).is_file(), name
    out = run_installed(scripts / "ember", site_packages, tmp_path, "select", "--task", "Inspect a bridge",
                        "--no-reasoning", "--json")
    assert '"schema": "ember.selection/1"' in out


def test_colcon_build_installs_the_ament_layout_and_executables(source_copy, tmp_path):
    colcon = Path(sys.executable).with_name("colcon")
    workspace = tmp_path / "ws"
    result = subprocess.run(
        [str(colcon), "--log-base", str(workspace / "log"), "build", "--base-paths", str(source_copy.parent),
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")],
        cwd=tmp_path, capture_output=True, text=True, check=False, env=clean_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    install = workspace / "install" / "ember_ros"
    for name in SHARE_FILES:
        assert (install / "share/ember_ros" / name).is_file(), name
    assert (install / ANCHOR).is_file()
    for name in EXECUTABLES:
        assert os.access(install / "lib/ember_ros" / name, os.X_OK), name
    # What `ros2 launch ember_ros selector.launch.py` and `ros2 run ember_ros selector` look up.
    find = ("from ament_index_python.packages import get_package_prefix as p, get_package_share_directory as s; "
            "print(s('ember_ros')); print(p('ember_ros'))")
    result = subprocess.run([sys.executable, "-c", find], env=clean_env(AMENT_PREFIX_PATH=str(install)),
                            capture_output=True, text=True, check=True)
    share, prefix = map(Path, result.stdout.split())
    assert (share / "launch/selector.launch.py").is_file() and os.access(prefix / "lib/ember_ros/selector", os.X_OK)
    executable = install / "lib/ember_ros/ember"
    out = run_installed(executable, install / "lib" / PY_DIR / "site-packages", tmp_path, "robots", "validate")
    assert out.startswith(f"OK {install / 'share/ember_ros/robots.yaml'}: 5 robots")


def test_colcon_symlink_install_builds_ember_msgs_and_ember_ros_in_a_workspace(source_copy, tmp_path):
    """A normal ROS workspace: this repository under src/, both packages built with --symlink-install (setup.py is
    run from build/ember_ros there), the Python environment pointed at with AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH."""
    colcon = Path(sys.executable).with_name("colcon")
    workspace, prefix = tmp_path / "ws", sys.prefix
    result = subprocess.run(
        [str(colcon), "--log-base", str(workspace / "log"), "build", "--symlink-install",
         "--base-paths", str(source_copy.parent), str(source_copy / "ember_msgs"),
         "--build-base", str(workspace / "build"), "--install-base", str(workspace / "install")],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env=clean_env(AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Finished <<< ember_msgs" in result.stdout and "Finished <<< ember_ros" in result.stdout
    # Symlinked: the installed package runs the workspace's sources.
    assert (workspace / "build/ember_ros/ember_ros").resolve() == source_copy / "ember_ros"
    check = (f". {workspace / 'install/setup.sh'} && python -c 'import ember_msgs.msg as m; print(m.__file__)' && "
             f"{workspace / 'install/ember_ros/lib/ember_ros/selector'} --help")
    env = clean_env(PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", "-c", check], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(workspace / "install/ember_msgs"))
    assert "serves:     ~/select_robots (ember_msgs/srv/SelectRobots)" in result.stdout
