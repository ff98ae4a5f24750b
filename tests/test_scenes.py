"""Tests for the scene vocabulary, the scene tags and procedural scene images, including a probe that the image adds nothing to the text."""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ember_train.public_data import PUBLIC_DATA
from ember_core import load_fleet
from ember_core.scenes import COARSE_SCENE_TAGS, KEYWORDS, SCENE_TAGS, SCENE_WORDS, render_scene, scene_tags
from ember_train.data import TaskRecord, kfold, load_public


def pixels(task: str, size: int = 224) -> np.ndarray:
    return np.asarray(render_scene(task, size))


def test_one_scene_vocabulary_that_every_table_reads():
    assert SCENE_TAGS == ("underwater", "aerial", "indoor", "outdoor", "rough_terrain")
    assert tuple(KEYWORDS) == SCENE_TAGS == tuple(SCENE_WORDS)
    assert SCENE_WORDS["underwater"] == "under water" and SCENE_WORDS["aerial"] == "at height or from the air"
    # The coarse tags are the shipped scene head's, in its order.
    assert COARSE_SCENE_TAGS == ("aerial", "underwater", "indoor", "outdoor")
    assert set(COARSE_SCENE_TAGS) < set(SCENE_TAGS)


def test_training_tables_use_the_core_scene_tags():
    """A misspelt tag in a training table would silently never match; every key must be a core tag."""
    from ember_train import baselines, scene_probe  # torch and sklearn: only this test needs them

    assert set(baselines.SCENE_PHRASES) <= set(SCENE_TAGS)
    assert inspect.signature(scene_probe.fit_scene_head).parameters["tags"].default == COARSE_SCENE_TAGS


def test_the_core_scene_module_imports_nothing_from_training():
    """The ROS demo camera renders scenes and ember_ros must not import ember_train."""
    code = "import sys, ember_core.scenes, ember_core.robot; print(sorted(m for m in sys.modules if m.startswith('ember_train')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("task", "tags"), [
    ("Inspect coral reefs for bleaching.", {"underwater"}),
    ("Check the hulls of ships in a busy port.", {"underwater"}),
    ("Survey agricultural fields to assess crop health from above.", {"aerial", "outdoor"}),
    ("Navigate tight corridors in a hospital to deliver supplies.", {"indoor"}),
    ("Carry supplies up a staircase in a damaged building.", {"indoor", "rough_terrain"}),
    ("Traverse a rocky mountain path to deliver a package.", {"outdoor", "rough_terrain"}),
    ("Check air ducts in a stadium for proper ventilation.", {"indoor"}),
    ("Survey the surface of a dry riverbed for signs of erosion.", set()),
    ("Deliver medecine to patients.", set()),
])
def test_scene_tags_from_keywords(task, tags):
    assert scene_tags(task) == tags


def test_same_text_renders_identical_pixels_whatever_the_label():
    text = "Task: Inspect a high-rise building\u2019s exterior for damage."
    as_drone = TaskRecord(text, ("drone",))
    as_legs = TaskRecord(text, ("robot_with_legs",), image=None)
    assert np.array_equal(pixels(as_drone.task), pixels(as_legs.task))
    assert np.array_equal(pixels(text), pixels("Inspect a high-rise building's exterior for damage."))


def test_each_scene_type_renders_differently_at_the_requested_size():
    tasks = {
        "underwater": "Inspect the seabed.",
        "aerial": "Film a concert from above.",
        "indoor": "Deliver files in an office.",
        "outdoor": "Cross a field.",
        "rough_outdoor": "Cross a rocky field.",
        "unknown": "Deliver medecine to patients.",
    }
    images = {name: render_scene(task, 64) for name, task in tasks.items()}
    assert all(image.size == (64, 64) and image.mode == "RGB" for image in images.values())
    arrays = [np.asarray(image, dtype=np.int16) for image in images.values()]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.abs(arrays[i] - arrays[j]).mean() > 2, (list(tasks)[i], list(tasks)[j])
    assert render_scene("Cross a field.").size == (224, 224)
    with pytest.raises(ValueError, match="size"):
        render_scene("Cross a field.", 8)


def test_image_probe_is_no_better_than_the_environment_words():
    """An image-only probe must not beat a probe on the task's scene tags: the image is the tags, drawn."""
    if not PUBLIC_DATA.is_dir():
        pytest.skip(f"public dataset not found at {PUBLIC_DATA}")
    linear_model = pytest.importorskip("sklearn.linear_model")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fleet = load_fleet()
    records = load_public(PUBLIC_DATA, fleet)
    images = np.stack([np.asarray(render_scene(r.task).resize((16, 16), Image.BOX)).ravel() / 255.0 for r in records])
    words = np.array([[tag in scene_tags(r.task) for tag in SCENE_TAGS] for r in records], dtype=float)
    labels = np.array([[robot in r.robots for robot in fleet.ids] for r in records], dtype=int)
    index = {id(r): i for i, r in enumerate(records)}
    correct = {"image": 0, "words": 0, "majority": 0}
    total = 0
    # One BLAS thread: these fits are tiny, and a thread pool per fit made the test ten times slower.
    with threadpoolctl.threadpool_limits(1):
        for train, held in kfold(records, k=5, seed=0):
            tr, te = [index[id(r)] for r in train], [index[id(r)] for r in held]
            for robot in range(len(fleet)):
                y_train, y_test = labels[tr, robot], labels[te, robot]
                majority = int(y_train.mean() >= 0.5)
                correct["majority"] += int((y_test == majority).sum())
                total += len(te)
                for name, features in (("image", images), ("words", words)):
                    if len(set(y_train)) < 2:
                        correct[name] += int((y_test == majority).sum())
                        continue
                    probe = linear_model.LogisticRegression(max_iter=2000).fit(features[tr], y_train)
                    correct[name] += int((probe.predict(features[te]) == y_test).sum())
    accuracy = {name: count / total for name, count in correct.items()}
    print(f"\nper-robot held-out accuracy (5-fold by task, {len(records)} tasks): "
          f"image probe {accuracy['image']:.3f}, environment-words probe {accuracy['words']:.3f}, "
          f"majority {accuracy['majority']:.3f}")
    assert accuracy["image"] <= accuracy["words"] + 0.05
