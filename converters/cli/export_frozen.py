"""export-frozen: one signature of a SavedModel -> one frozen GraphDef file for libtensorflow."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from converters.cli.common import (
    add_debug_flag,
    import_tensorflow_quietly,
    new_parser,
    print_verify_report,
    run_cli,
)
from converters.errors import UsageError

EPILOG = """\
examples:
  export-frozen models/credit/3 --output credit.pb
  export-frozen models/credit --output credit.pb      # the highest version
  export-frozen models/ranker/1 --output ranker.pb --signature scores --overwrite

The file holds the signature's graph with every variable folded into a constant: nothing
else is needed to run it (no variables folder, no saver, no init op). It is written only
after it has been imported into a fresh graph and its outputs compared with the
SavedModel's at batch sizes 1 and 3. Each line printed names a tensor the way
libtensorflow looks it up (Go: graph.Operation("NAME").Output(0); C:
TF_GraphOperationByName(graph, "NAME"), index 0):

  input  features:0  float32  [-1,8]
  output prediction:0  float32  [-1]

Models holding lookup tables or other resources initialised at load time cannot be frozen
and are refused, naming the op: serve those as SavedModels. A failed export leaves no file.
Exit codes: 0 written, 1 cannot freeze or verification failed, 2 bad arguments.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "export-frozen",
        "Freeze a SavedModel signature into one GraphDef file (variables as constants, "
        "inference only) for Go, C or Java programs using libtensorflow.",
        EPILOG,
    )
    parser.add_argument(
        "version_dir",
        type=Path,
        metavar="VERSION_DIR",
        help="a SavedModel folder (models/NAME/N), or a model folder (its highest version)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="FILE.pb",
        help="the GraphDef file to write (its folder must exist)",
    )
    parser.add_argument(
        "--signature",
        default="serving_default",
        metavar="NAME",
        help="the signature to freeze (default: serving_default; inspect-model lists them)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace FILE.pb if it already exists"
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        help="max abs difference allowed per output (default 1e-5 for float32)",
    )
    add_debug_flag(parser)
    return parser


def _check_output(path: Path, overwrite: bool) -> Path:
    if path.is_dir():
        raise UsageError(f"--output {path} is a folder; name the file, e.g. {path}/model.pb")
    if not path.parent.is_dir():
        raise UsageError(f"--output {path}: no folder {path.parent}; create it first")
    if path.exists() and not overwrite:
        raise UsageError(f"--output {path} already exists; pass --overwrite to replace it")
    return path


def _export(args: argparse.Namespace) -> int:
    from converters.signatures import find_export_dir

    if args.atol is not None and args.atol < 0:
        raise UsageError(f"--atol must be >= 0, got {args.atol}")
    target = _check_output(args.output, args.overwrite)
    export_dir = find_export_dir(args.version_dir)
    import_tensorflow_quietly(args.debug)
    from converters.frozen import freeze, verify_frozen, write_atomically

    print(f"source:    {export_dir} (signature {args.signature})")
    frozen = freeze(export_dir, args.signature)
    for tensor in frozen.inputs:
        print(tensor.line("input"))
    for tensor in frozen.outputs:
        print(tensor.line("output"))
    report = verify_frozen(export_dir, frozen, args.signature, args.atol)
    print_verify_report(report)
    data = frozen.serialized()
    write_atomically(data, target)
    print(f"wrote:     {target} ({len(data):,} bytes, {len(frozen.graph_def.node)} nodes)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `export-frozen` console script; returns the exit code."""
    return run_cli(_export, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
