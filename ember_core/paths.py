"""Where Ember's installed data (robots.yaml, config/, launch/) lives: share/ember_ros or the checkout."""
from __future__ import annotations

from pathlib import Path

PACKAGE_NAME = "ember_ros"


def share_dir() -> Path:
    """The directory holding robots.yaml, config/ and launch/.

    In a source checkout (editable install, tests) that is the repository root, so edits there take
    effect at once. Installed by pip or colcon it is `<prefix>/share/ember_ros`, with <prefix> taken
    from this module's own location (`<prefix>/lib/pythonX.Y/site-packages/ember_core/`), which
    covers virtualenvs, `--user` installs and colcon install spaces alike.
    """
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if (checkout / "package.xml").is_file() and (checkout / "robots.yaml").is_file():
        return checkout
    installed = Path(__file__).parent.parents[3] / "share" / PACKAGE_NAME
    if installed.is_dir():
        return installed
    raise FileNotFoundError(
        f"Ember's data directory was not found: neither a source checkout at {checkout} nor an "
        f"install at {installed}. Reinstall the package (pip install . or colcon build)."
    )
