"""Shared fixtures: plugin modules and robots.yaml files written into a temporary directory."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Tests never reach a model hub: a hub name that is not cached fails at once instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
# Nor the user's cache: card embeddings are computed in every test unless one sets EMBER_CACHE_DIR itself.
os.environ["EMBER_CACHE_DIR"] = ""

# Property-based (fuzz) tests: a few hundred examples per property in CI; `pytest --fuzz-long` or
# EMBER_FUZZ_LONG=1 runs thousands by hand. No deadline: a model call's time varies with the machine.
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("long" if os.environ.get("EMBER_FUZZ_LONG") else "ci")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", help="run thousands of examples per fuzz property")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--fuzz-long"):
        settings.load_profile("long")


REPO = Path(__file__).resolve().parents[1]

SNAKE_PLUGIN = '''
from ember_core import RobotType, hookimpl

@hookimpl
def ember_robot_types():
    return [RobotType(
        id="snake_robot",
        name="Snake Robot",
        description="Slender multi-link robot that slides through pipes and rubble gaps.",
        capabilities=["pipe navigation", "confined space access", "climbing"],
        limitations=["slow movement", "no payload"],
        environments=["pipes", "rubble", "crevices"],
    )]
'''


@pytest.fixture(autouse=True)
def _forget_test_plugins(tmp_path_factory: pytest.TempPathFactory):
    """Plugin modules a test wrote must not stay cached for the next test, which may reuse the name."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for name, module in list(sys.modules.items()):
        if (getattr(module, "__file__", None) or "").startswith(base):
            del sys.modules[name]


@pytest.fixture(scope="session")
def fleet():
    """The default five-robot fleet from the packaged robots.yaml."""
    from ember_core import load_fleet

    return load_fleet()


@pytest.fixture
def default_robots_lines() -> list[str]:
    """The entries of the packaged robots.yaml, as YAML lines."""
    return [line for line in (REPO / "robots.yaml").read_text().splitlines() if line.startswith("  - ")]


@pytest.fixture
def write_robots(tmp_path: Path):
    """Write robots.yaml (entries as YAML list lines) into tmp_path and return its path."""

    def write(lines: list[str], name: str = "robots.yaml") -> Path:
        path = tmp_path / name
        path.write_text("robots:\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_plugin(tmp_path: Path):
    """Write a plugin module into tmp_path (next to robots.yaml) and return its path."""

    def write(module: str, source: str) -> Path:
        path = tmp_path / f"{module}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-init `tiny` preset model for the default fleet, saved once per test session."""
    import torch

    from ember_core import load_fleet
    from ember_core.model.config import preset
    from ember_core.pretrained import build_model, save_pretrained

    torch.manual_seed(0)
    return save_pretrained(*build_model(preset("tiny"), load_fleet()), tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """`tiny_model_dir` exported for the onnxruntime backend (its parity check passed), once per test session."""
    from ember_train.onnx_export import write_export

    out = tmp_path_factory.mktemp("tiny-onnx") / "onnx"
    write_export(tiny_model_dir, out)
    return out
