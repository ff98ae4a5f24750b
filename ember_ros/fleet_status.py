"""The `fleet_status` topic's JSON read into a FleetStatus, with the size and depth limits checked before parsing."""
from __future__ import annotations

from ember_core import safe_json
from ember_core.availability import FleetStatus, parse_fleet_status
from ember_core.fleet import Fleet


def read_fleet_status(text: str | bytes, fleet: Fleet) -> FleetStatus:
    """The FleetStatus a fleet_status message gives `fleet`.

    Raises ValueError naming what is wrong: over limits.MAX_JSON_BYTES, nested deeper than
    limits.MAX_JSON_DEPTH, not JSON, or not the {"available"|"busy"|"offline": [ids]} shape.
    """
    try:
        document = safe_json.loads(text)
    except ValueError as err:  # json.JSONDecodeError is a ValueError too
        raise ValueError(f"fleet_status is not readable JSON: {err}") from err
    return parse_fleet_status(document, fleet)
