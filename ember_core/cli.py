"""The `ember` command line: inspect the fleet, select robots for a task, inspect models."""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import sys
from typing import Sequence

from ember_core.backend import BACKENDS
from ember_core.extras import MissingExtraError, missing_extra
from ember_core.fleet import Fleet, UnknownRobotError
from ember_core.model.config import PRESETS
from ember_core.presentation import render_selection
from ember_core.request import DEFAULT_CONFIDENCE_THRESHOLD, DEFAULT_TOP_K
from ember_core.robot import LIST_FIELDS, NUMBER_FIELDS
from ember_core.robots_file import ENV_VAR, FleetConfigError, find_robots_file, load_fleet

EXIT_ERROR = 2  # what argparse exits with for a usage error; every other error too
# Packages that add subcommands register `add_commands(subparsers)` here (the training package adds train and eval).
COMMANDS_GROUP = "ember.commands"
SHOWN_EXAMPLES = 3  # `ember robots show` lists this many example requests; --json gives all
LOG_FORMAT = "%(asctime)s %(levelname)s - %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="Ember: pick the right robots of a fleet for a task.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('ember_ros')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fleet_file = argparse.ArgumentParser(add_help=False)
    fleet_file.add_argument(
        "--robots", metavar="FILE", default=None,
        help=f"robots.yaml to load (default: ${ENV_VAR}, ./robots.yaml, then the installed default)",
    )
    _add_robots_command(commands, fleet_file)
    _add_select_command(commands, fleet_file)
    _add_model_command(commands, fleet_file)
    for entry_point in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        entry_point.load()(commands)  # e.g. `train` and `eval`; their code loads only when they run
    return parser


def _add_robots_command(commands: argparse._SubParsersAction, fleet_file: argparse.ArgumentParser) -> None:
    robots = commands.add_parser("robots", help="inspect and validate the robot fleet (robots.yaml)")
    robot_commands = robots.add_subparsers(dest="robots_command", required=True, metavar="ACTION")
    listing = robot_commands.add_parser("list", parents=[fleet_file], help="list the fleet's robot types in order")
    listing.add_argument("--json", action="store_true", help="print a JSON list of {id, name, capabilities, limitations, environments}")
    listing.set_defaults(handler=_list)

    show = robot_commands.add_parser("show", parents=[fleet_file], help="show one robot type's capability card")
    show.add_argument("robot", metavar="ID", help="robot id (e.g. underwater_robot) or display name")
    show.add_argument("--json", action="store_true", help="print the card as JSON")
    show.set_defaults(handler=_show)

    check = robot_commands.add_parser("check", parents=[fleet_file],
                                      help="how well a robot's card sets it apart: its examples left out one at a "
                                           "time and selected, phrases close to other cards, a verdict")
    check.add_argument("robot", metavar="ID", nargs="?", default=None, help="robot id or name (default: every robot)")
    check.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the shipped model)")
    check.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    check.add_argument("--json", action="store_true", help="print the checks as JSON")
    check.set_defaults(handler=_check)

    validate = robot_commands.add_parser("validate", help="load a robots.yaml and all its plugins, report errors")
    validate.add_argument("file", metavar="FILE", nargs="?", default=None, help="robots.yaml to check (default: the one in use)")
    validate.set_defaults(handler=_validate)


def _add_select_command(commands: argparse._SubParsersAction, fleet_file: argparse.ArgumentParser) -> None:
    select = commands.add_parser("select", parents=[fleet_file], help="rank the fleet's robots for a task")
    select.add_argument("--task", required=True, help="what the robots should do")
    select.add_argument("--image", metavar="PATH", default=None, help="camera image of the scene (optional)")
    select.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many ranked robots to return (default %(default)s)")
    select.add_argument("--confidence-threshold", type=float, default=DEFAULT_CONFIDENCE_THRESHOLD,
                        help="robots after the first are selected at or above this confidence (default %(default)s)")
    select.add_argument("--no-reasoning", dest="reasoning", action="store_false", help="skip generating reasoning and plan")
    select.add_argument("--model", metavar="DIR", default=None, help="model directory written by save_pretrained")
    select.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1 ... (default %(default)s)")
    select.add_argument("--backend", choices=BACKENDS, default=None,
                        help="torch, or onnx (onnxruntime, for a --model written by `ember export onnx`); default: "
                             "onnx for such a directory, torch otherwise")
    select.add_argument("--json", action="store_true", help="print the selection document (JSON)")
    select.add_argument("--no-scene-vetoes", dest="scene_vetoes", action="store_false",
                        help="do not let the fleet's scene rules (cards and plugins) rule robots out by the scene seen in --image")
    select.set_defaults(handler=_select)


def _add_model_command(commands: argparse._SubParsersAction, fleet_file: argparse.ArgumentParser) -> None:
    model = commands.add_parser("model", help="inspect models")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    info = model_commands.add_parser("info", parents=[fleet_file], help="parameter counts per part, config and fleet")
    info.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the model shipped with Ember)")
    info.add_argument("--preset", default=None, choices=sorted(PRESETS), help="describe a random-init model of this preset instead")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(handler=_model_info)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `ember` command. Exit status 0 on success, 2 on any error (argparse's usage errors too),
    reported as one `ember: error: ...` line; EMBER_DEBUG=1 shows the traceback of an unexpected one."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars in a CLI
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        return args.handler(args)
    except (FleetConfigError, UnknownRobotError, OSError, ValueError) as err:
        _error(str(err))
    except MissingExtraError as err:
        _error(str(err))
    except Exception as err:  # noqa: BLE001 - a command line reports, it does not dump a traceback
        missing = missing_extra(err, f"`ember {args.command}`")
        if missing is not None:
            _error(str(missing))
        elif os.environ.get("EMBER_DEBUG"):
            raise
        else:
            _error(f"unexpected {type(err).__name__}: {err} (set EMBER_DEBUG=1 for the traceback, and please report it)")
    return EXIT_ERROR


def _error(message: str) -> None:
    # One line, printable on any terminal: text from the outside (argv, files) may hold anything.
    line = " ".join(message.split())[:2000]
    print(f"ember: error: {line}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)


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
        if name == "examples":  # whole sentences: a few, one a line
            shown, more = card[name][:SHOWN_EXAMPLES], len(card[name]) - SHOWN_EXAMPLES
            print(f"  examples: {len(card[name]) or '-'}" + "".join(f"\n    - {text}" for text in shown)
                  + (f"\n    ... {more} more (--json lists them all)" if more > 0 else ""))
        else:
            print(f"  {name}: {', '.join(card[name]) or '-'}")
    for name in NUMBER_FIELDS:
        if card[name] is not None:
            print(f"  {name}: {card[name]:g}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ember_core.card_check import check_cards  # torch and transformers load only for model commands

    fleet = load_fleet(args.robots)
    ids = [fleet.robot(args.robot).id] if args.robot else list(fleet.ids)
    checks = check_cards(fleet, ids, args.model, args.device)
    if args.json:
        print(json.dumps([check.to_dict() for check in checks], indent=2, ensure_ascii=False))
        return 0
    for check in checks:
        for example in check.examples:
            went = "" if example.rank == 1 else f"  (first: {example.first})"
            print(f"  rank {example.rank}  {example.example}{went}")
        for overlap in check.overlaps:
            print(f"  overlap: {overlap.phrase!r} ~ {overlap.other_robot} {overlap.other_phrase!r} ({overlap.cosine:.2f})")
        print(check.verdict)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from ember_core.fleet import fleet_warnings

    fleet: Fleet = load_fleet(args.file)
    print(f"OK {find_robots_file(args.file)}: {fleet.num_robots} robots ({', '.join(fleet.ids)}), hash {fleet.hash[:12]}")
    for warning in fleet_warnings(fleet):  # the fleet loads; these are worth a look, not errors
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _select(args: argparse.Namespace) -> int:
    from ember_core.request import SelectionRequest
    from ember_core.selector import Selector  # torch and transformers load only for model commands

    selector = Selector(args.model, robots_file=args.robots, device=args.device, scene_vetoes=args.scene_vetoes,
                        backend=args.backend)
    request = SelectionRequest(args.task, args.image, top_k=args.top_k, confidence_threshold=args.confidence_threshold,
                               return_reasoning=args.reasoning)
    document = selector.select(request).to_document()
    if args.json:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(render_selection(document))
    return 0 if document["status"] == "ok" else EXIT_ERROR


def _model_info(args: argparse.Namespace) -> int:
    from ember_core.model.config import preset
    from ember_core.model_info import model_info
    from ember_core.pretrained import build_model, load_pretrained

    fleet = load_fleet(args.robots)
    model, processor = build_model(preset(args.preset), fleet) if args.preset else load_pretrained(args.model, fleet)
    counts = model.parameter_counts()
    info = model_info(model, processor, fleet, counts)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{model.name}: {counts['total'] / 1e6:.1f}M parameters, vocabulary {len(processor.tokenizer)}")
    for part, count in counts.items():
        if part != "total":
            print(f"  {part:<15} {count / 1e6:8.2f}M")
    print(f"Fleet: {', '.join(fleet.ids)} (hash {fleet.hash[:12]}); calibration {processor.config.calibration.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
