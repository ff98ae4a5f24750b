"""Where the public robot-selection data set is: one variable, $EMBER_DATA, with one default."""
from __future__ import annotations

import os
from pathlib import Path

from ember_core.paths import share_dir

DATA_ENV_VAR = "EMBER_DATA"
# The default is the data set laid beside a source checkout (shared/data/robot-selection); it is never copied in.
PUBLIC_DATA = Path(os.environ.get(DATA_ENV_VAR) or share_dir().parent / "shared" / "data" / "robot-selection")
