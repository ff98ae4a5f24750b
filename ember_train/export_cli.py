"""`ember export onnx`: a model's ONNX graphs with everything inference needs, checked against torch."""
from __future__ import annotations

import argparse

from ember_core.onnx_layout import DEFAULT_OPSET


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a model for deployment")
    formats = export.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX graphs, tokenizers, fleet, calibration, config and manifest, for "
                                           "`ember select --backend onnx`; fails if they differ from torch")
    onnx.add_argument("--model", metavar="DIR", default=None, help="model directory (default: the model shipped with Ember)")
    onnx.add_argument("--out", metavar="DIR", required=True, help="directory to write (replaced if it exists)")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    onnx.set_defaults(handler=_export_onnx)


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
