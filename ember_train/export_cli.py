"""`ember export onnx` and `ember export quantize`: a model's ONNX graphs, checked against torch, and their int8
version, checked against them."""
from __future__ import annotations

import argparse

from ember_core.onnx_layout import DEFAULT_OPSET, GRAPHS, MANIFEST_FILE
from ember_core.paths import share_dir
from ember_train.public_data import PUBLIC_DATA

DEFAULT_MAX_DROP = 1.0  # points of hit@1 the gate accepts losing on a report set
# The hand-written task sets of the source checkout (tests/data): one to choose on, one the gate reports on.
DEVELOPMENT_TASKS = "novel_dev_tasks.jsonl"
REPORT_TASKS = "novel_tasks.jsonl"


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a model for deployment")
    formats = export.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX graphs, tokenizers, fleet, calibration, config and manifest, for "
                                           "`ember select --backend onnx`; fails if they differ from torch")
    onnx.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the model shipped with Ember)")
    onnx.add_argument("--out", metavar="DIR", required=True, help="directory to write (replaced if it exists)")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    onnx.set_defaults(handler=_export_onnx)
    _add_quantize_command(formats)


def _add_quantize_command(formats: argparse._SubParsersAction) -> None:
    data = share_dir() / "tests" / "data"
    quantize = formats.add_parser(
        "quantize", help="int8 graphs where they pay (dynamic int8, static QDQ for vision), chosen by measurement on "
                         "development tasks, behind a hit@1 gate on the public validation split and the novel set")
    quantize.add_argument("--model", metavar="ONNX_DIR", required=True, help="directory written by `ember export onnx`")
    quantize.add_argument("--out", metavar="DIR", required=True, help="directory to write (replaced if it exists)")
    quantize.add_argument("--data", metavar="DIR", default=str(PUBLIC_DATA),
                          help="public dataset: the gate reports on its validation split, and its train split's "
                               "rendered scenes calibrate the vision graph (default: $EMBER_DATA, %(default)s)")
    quantize.add_argument("--seed", type=int, default=0, help="split seed used in training (default %(default)s)")
    quantize.add_argument("--tasks", metavar="FILE.jsonl", default=str(data / REPORT_TASKS),
                          help="a second set the gate reports on (default: the novel set, %(default)s)")
    quantize.add_argument("--dev", metavar="FILE.jsonl", default=str(data / DEVELOPMENT_TASKS),
                          help="development tasks the per-graph choice is measured on; never a set the gate reports "
                               "on (default: %(default)s)")
    quantize.add_argument("--max_drop", "--max-drop", type=float, default=DEFAULT_MAX_DROP, metavar="POINTS",
                          help="largest hit@1 drop, in points, the gate accepts on each set (default %(default)s)")
    quantize.add_argument("--keep_fp32", "--keep-fp32", action="append", default=[], choices=GRAPHS, metavar="GRAPH",
                          help=f"leave a graph fp32 without measuring it; repeatable ({', '.join(GRAPHS)})")
    quantize.set_defaults(handler=_export_quantize)


def _export_onnx(args: argparse.Namespace) -> int:
    from ember_train.onnx_export import ParityError, write_export  # torch loads only when it runs
    from ember_train.onnx_parity import format_checks

    try:
        checks = write_export(args.model, args.out, args.opset)
    except ParityError as err:
        print(format_checks(err.checks))
        raise
    print(format_checks(checks))
    print(f"Exported to {args.out}")
    return 0


def _export_quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ember_core.processor import saved_fleet
    from ember_train.data import load_records, split_records
    from ember_train.onnx_quantize import GateError, Quantized, QuantizeRequest, write_quantized
    from ember_train.quantize_gate import GateSet

    if not (Path(args.model) / MANIFEST_FILE).is_file():
        raise ValueError(f"--model {args.model}: no {MANIFEST_FILE}; pass a directory written by `ember export onnx`")
    fleet = saved_fleet(args.model)
    splits = split_records(load_records(args.data, fleet), seed=args.seed)
    gate = [GateSet(f"{Path(args.data).name}: validation split (seed {args.seed})", splits.val),
            GateSet(Path(args.tasks).name, load_records(args.tasks, fleet))]
    request = QuantizeRequest(Path(args.model), Path(args.out), load_records(args.dev, fleet), splits.train, gate,
                              args.max_drop, tuple(args.keep_fp32))
    try:
        result = write_quantized(request)
    except GateError as err:
        _print_result(err.result, request)
        raise
    _print_result(result, request)
    print(f"Quantized export written to {args.out}")
    return 0


def _print_result(result: Quantized, request: QuantizeRequest) -> None:
    from ember_train.quantize_choice import format_choices
    from ember_train.quantize_gate import format_gate

    print(f"Per graph, measured on {len(request.development)} development selections (rendered scenes, with "
          f"reasoning); ms: mean per call of the inputs they gave the graph:")
    print(format_choices(result.choices))
    print(f"\nAccuracy gate (fails past a hit@1 drop of {request.max_drop:g} point(s) on a set):")
    print(format_gate(result.rows, request.max_drop))
