"""The `ember` command line: inspect and validate the robot fleet (more subcommands join later)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ember_core.fleet import Fleet, UnknownRobotError
from ember_core.robot import LIST_FIELDS, NUMBER_FIELDS
from ember_core.robots_file import ENV_VAR, FleetConfigError, find_robots_file, load_fleet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Ember: pick the right robots of a fleet for a task.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    robots = commands.add_parser("robots", help="inspect and validate the robot fleet (robots.yaml)")
    robot_commands = robots.add_subparsers(dest="robots_command", required=True, metavar="ACTION")
    fleet_file = argparse.ArgumentParser(add_help=False)
    fleet_file.add_argument(
        "--robots", metavar="FILE", default=None,
        help=f"robots.yaml to load (default: ${ENV_VAR}, ./robots.yaml, then the installed default)",
    )

    listing = robot_commands.add_parser("list", parents=[fleet_file], help="list the fleet's robot types in order")
    listing.add_argument("--json", action="store_true", help="print a JSON list of {id, name, capabilities, limitations, environments}")
    listing.set_defaults(handler=_list)

    show = robot_commands.add_parser("show", parents=[fleet_file], help="show one robot type's capability card")
    show.add_argument("robot", metavar="ID", help="robot id (e.g. underwater_robot) or display name")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    show.set_defaults(handler=_show)

    validate = robot_commands.add_parser("validate", help="load a robots.yaml and all its plugins, report errors")
    validate.add_argument("file", metavar="FILE", nargs="?", default=None, help="robots.yaml to check (default: the one in use)")
    validate.set_defaults(handler=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FleetConfigError, UnknownRobotError) as err:
        print(f"ember: error: {err}", file=sys.stderr)
        return 1


def _list(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.robots)
    if args.json:
        print(json.dumps(fleet.summary(), indent=2, ensure_ascii=False))
        return 0
    print(f"Fleet from {find_robots_file(args.robots)}: {fleet.num_robots} robots, hash {fleet.hash[:12]}")
    rows = [("#", "id", "name", "environments")]
    rows += [(str(i), r.id, r.name, ", ".join(r.environments)) for i, r in enumerate(fleet)]
    widths = [max(len(row[col]) for row in rows) for col in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return 0


def _show(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.robots)
    robot = fleet.robot(args.robot)
    card = robot.to_dict()
    if args.json:
        print(json.dumps(card, indent=2, ensure_ascii=False))
        return 0
    print(f"{robot.name} ({robot.id}), index {fleet.index(robot.id)} of {fleet.num_robots}")
    print(f"  {robot.description}")
    for name in LIST_FIELDS:
        print(f"  {name}: {', '.join(card[name]) or '-'}")
    for name in NUMBER_FIELDS:
        if card[name] is not None:
            print(f"  {name}: {card[name]:g}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    fleet: Fleet = load_fleet(args.file)
    print(f"OK {find_robots_file(args.file)}: {fleet.num_robots} robots ({', '.join(fleet.ids)}), hash {fleet.hash[:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
