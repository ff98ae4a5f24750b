"""Write the corpus of known-bad robots.yaml files into tests/data/fuzz/robots/, one folder per case.

Each folder holds a robots.yaml, the plugin files beside it, and expect.json: {"error": message}, the
exact FleetConfigError ("{file}" stands for the robots.yaml path), or {"ids": [...]} for a file that
must load as if the files beside it were not there (the shadowing attacks). tests/test_fuzz_fleet.py
loads every case and checks that this script still writes the corpus as committed.

    python tools/make_fuzz_corpus_robots.py [OUT_DIR]     # default: tests/data/fuzz/robots
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "fuzz" / "robots"
ENTRY = "{file}: entry 1 (plugin '%s'): "
SHADOW = "raise RuntimeError('%s next to robots.yaml replaced the one Python would import')\n"


def _alias_bomb() -> str:
    """The billion laughs: 9 lists of 9 aliases to the list before, 9**9 strings from 400 bytes (72 aliases)."""
    names = "abcdefghi"
    parts = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&{name} [{', '.join([f'*{before}'] * 9)}]" for before, name in zip(names, names[1:])]
    return "robots:\n  - [" + ", ".join(parts) + "]\n"


def _doubling_bomb() -> str:
    """Under the alias limit (62 aliases), each list twice the one before: 2**32 values."""
    lines = ["robots:", "  - &l0 [lol, lol]"]
    lines += [f"  - &l{level} [*l{level - 1}, *l{level - 1}]" for level in range(1, 32)]
    return "\n".join(lines) + "\n"


CARD = ('RobotType(id=%r, name="Cart", description="Site cart.", capabilities=["carry"], limitations=["slow"], '
        'environments=["indoor"])')
TYPES_HOOK = "from ember_core import RobotType, hookimpl\n\n@hookimpl\ndef ember_robot_types():\n    %s\n"
SIGNAL_LAMP = """import colorsys

from ember_core import RobotType, hookimpl

HUE = colorsys.rgb_to_hsv(1.0, 0.0, 0.0)[0]  # the standard library's colorsys, whatever lies beside robots.yaml


@hookimpl
def ember_robot_types():
    return [RobotType(id="signal_lamp", name="Signal Lamp", description=f"Lamp of hue {HUE:g}.", capabilities=["signal"],
                      limitations=["fixed"], environments=["indoor"])]
"""

# case: (files relative to the case folder, expectation)
CASES: dict[str, tuple[dict[str, str | bytes], dict]] = {
    "alias_bomb": ({"robots.yaml": _alias_bomb()}, {
        "error": "{file}: line 2: more than 64 aliases (*name) (ember_core.limits.MAX_YAML_ALIASES); "
                 "write the values out instead"}),
    "alias_bomb_under_alias_limit": ({"robots.yaml": _doubling_bomb()}, {
        "error": "{file}: line 18: holds more than 131072 values once its aliases are expanded (an alias bomb?); "
                 "a robots.yaml holds a few thousand"}),
    "recursive_alias": ({"robots.yaml": "robots: &r [*r]\n"}, {
        "error": "{file}: line 1: an alias refers to a value that contains it (a recursive structure); "
                 "write the value out instead"}),
    "deep_nesting_flow": ({"robots.yaml": "robots:\n  - " + "[" * 10_000 + "]" * 10_000 + "\n"}, {
        "error": "{file}: line 2: nested deeper than 32 levels (ember_core.limits.MAX_YAML_DEPTH); a robots.yaml needs four"}),
    "deep_nesting_block": ({"robots.yaml": "robots:\n  - " + "- " * 100 + "x\n"}, {
        "error": "{file}: line 2: nested deeper than 32 levels (ember_core.limits.MAX_YAML_DEPTH); a robots.yaml needs four"}),
    "duplicate_key": ({"robots.yaml": "robots:\n  - plugin: ember_plugins.drone\nrobots:\n  - plugin: ember_plugins.humanoid\n"}, {
        "error": "{file}: line 3: duplicate key 'robots' (first given on line 1); a mapping gives each key once, "
                 "remove one of them"}),
    "duplicate_key_in_entry": ({"robots.yaml": "robots:\n  - {plugin: ember_plugins.drone, plugin: ember_plugins.humanoid}\n"}, {
        "error": "{file}: line 2: duplicate key 'plugin' (first given on line 2); a mapping gives each key once, "
                 "remove one of them"}),
    "python_tag": ({"robots.yaml": 'robots:\n  - !!python/object/apply:os.system ["echo pwned"]\n'}, {
        "error": "{file}: line 2, column 5: could not determine a constructor for the tag "
                 "'tag:yaml.org,2002:python/object/apply:os.system'; only plain strings, numbers, lists and mappings are read"}),
    "not_utf8": ({"robots.yaml": b"robots:\n  - plugin: caf\xe9\n"}, {
        "error": "{file}: not UTF-8 text: byte 0xe9 at offset 23; save the file as UTF-8"}),
    "impossible_date": ({"robots.yaml": "robots:\n  - {plugin: ember_plugins.drone, robot: 2024-13-45}\n"}, {
        "error": "{file}: line 2, column 42: the value '2024-13-45' cannot be read: ValueError: month must be in 1..12"}),
    "entry_keys_of_mixed_types": ({"robots.yaml": "robots:\n  - {plugin: ember_plugins.drone, 1: a, b: c}\n"}, {
        "error": "{file}: entry 1: unknown key(s) ['b', 1]; allowed: ['overrides', 'plugin', 'robot']"}),
    "override_int_too_large_for_a_float": (
        {"robots.yaml": "robots:\n  - plugin: ember_plugins.drone\n    overrides: {payload_kg: 1" + "0" * 400 + "}\n"}, {
            "error": ENTRY % "ember_plugins.drone" + "overrides: field 'payload_kg': expected a non-negative number "
                                                    "or null, got <int of 1329 bits>"}),
    "name_with_escape_code": ({"robots.yaml": 'robots:\n  - plugin: ember_plugins.drone\n    overrides: {name: "Drone\\e[31m"}\n'}, {
        "error": ENTRY % "ember_plugins.drone" + "overrides: field 'name': control or formatting character U+001B at position 5 of "
                                                "'Drone\\x1b[31m'; remove it"}),
    "plugin_name_with_newline": ({"robots.yaml": 'robots:\n  - plugin: "ember_plugins.drone\\n"\n'}, {
        "error": ENTRY % "ember_plugins.drone\\n" + "field 'plugin': 'ember_plugins.drone\\n' is neither an entry point "
                                                   "of the group 'ember.robots' nor a module path such as 'ember_plugins.drone'"}),
    "plugin_name_too_long": ({"robots.yaml": "robots:\n  - plugin: " + "a" * 300 + "\n"}, {
        "error": ENTRY % ("a" * 77 + "...") + "field 'plugin': '" + "a" * 27 + "..." + "a" * 28 + "' is longer than 200 "
                                              "characters; name a module path such as 'ember_plugins.drone' or an entry point"}),
    "id_with_newline": ({"robots.yaml": "robots:\n  - plugin: newline_id\n", "newline_id.py": TYPES_HOOK % ("return [" + CARD % "cart\n" + "]")}, {
        "error": ENTRY % "newline_id" + "field 'id': 'cart\\n' is not a valid id; use lower_snake_case such as 'underwater_robot'"}),
    "plugin_exits_on_import": ({"robots.yaml": "robots:\n  - plugin: exits_on_import\n", "exits_on_import.py": "import sys\n\nsys.exit(0)\n"}, {
        "error": ENTRY % "exits_on_import" + "plugin module failed to import: SystemExit: 0; a plugin must not exit the process"}),
    "plugin_raises_base_exception": ({"robots.yaml": "robots:\n  - plugin: raises_base\n",
                                      "raises_base.py": "class Boom(BaseException):\n    pass\n\n\nraise Boom('no')\n"}, {
        "error": ENTRY % "raises_base" + "plugin module failed to import: Boom: no"}),
    "types_hook_raises": ({"robots.yaml": "robots:\n  - plugin: types_hook_raises\n",
                           "types_hook_raises.py": TYPES_HOOK % "raise RuntimeError('card service unreachable')"}, {
        "error": ENTRY % "types_hook_raises" + "hook 'ember_robot_types' raised RuntimeError: card service unreachable"}),
    "types_hook_exits": ({"robots.yaml": "robots:\n  - plugin: types_hook_exits\n",
                          "types_hook_exits.py": "import sys\n\n" + TYPES_HOOK % "sys.exit(3)"}, {
        "error": ENTRY % "types_hook_exits" + "hook 'ember_robot_types' raised SystemExit: 3"}),
    "shadow_ember_plugins": ({"robots.yaml": "robots:\n  - plugin: ember_plugins.drone\n  - plugin: ember_plugins.humanoid\n",
                              "ember_plugins/__init__.py": SHADOW % "a folder ember_plugins/",
                              "ember_plugins/drone.py": SHADOW % "ember_plugins/drone.py"}, {
        "ids": ["drone", "humanoid"]}),
    "shadow_stdlib_module": ({"robots.yaml": "robots:\n  - plugin: signal_lamp\n",
                              "colorsys.py": SHADOW % "colorsys.py",
                              "signal_lamp.py": SIGNAL_LAMP}, {
        "ids": ["signal_lamp"]}),
    "plugin_named_like_stdlib_module": ({"robots.yaml": "robots:\n  - plugin: colorsys\n",
                                         "colorsys.py": TYPES_HOOK % f"return [{CARD % 'cart'}]"}, {
        "error": ENTRY % "colorsys" + "the plugin declares no robot types (implement the 'ember_robot_types' hook)"}),
}


def write_corpus(out: Path = OUT) -> list[str]:
    """Write every case into `out` (replacing what is there) and return the case names."""
    if out.exists():
        shutil.rmtree(out)
    for case, (files, expect) in CASES.items():
        folder = out / case
        for name, content in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        (folder / "expect.json").write_text(json.dumps(expect, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return sorted(CASES)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    print(f"wrote {len(write_corpus(target))} cases into {target}")
