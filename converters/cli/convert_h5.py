"""convert-h5: a Keras model file -> MODELS_DIR/NAME/N/ SavedModel + models.config entry."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from converters.cli.common import (
    add_debug_flag,
    add_destination_flags,
    add_verify_flags,
    check_verify_flags,
    import_tensorflow_quietly,
    new_parser,
    print_verify_report,
    publish_and_report,
    run_cli,
)

EPILOG = """\
examples:
  convert-h5 model.h5 --name credit                      # -> models/credit/<next>/
  convert-h5 weights.h5 --architecture model.json --name credit --version 3
  convert-h5 model.h5 --name credit --custom-objects mypkg.layers --input-names age,income

Keras 3 reads the file first; files it cannot read (old Keras 2 configs) are read by the
tf-keras compatibility package instead. The model is loaded for inference only (its
optimizer, losses and metrics are ignored) and the export is checked against it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "convert-h5",
        "Convert a Keras model (.h5/.hdf5 from Keras 2 or 3, .keras, or architecture JSON + "
        "weights) into a TF Serving version folder with a serving_default signature.",
        EPILOG,
    )
    parser.add_argument(
        "src", type=Path, metavar="SRC", help="model file (.h5, .hdf5, .keras; any suffix)"
    )
    source = parser.add_argument_group("source")
    source.add_argument(
        "--architecture",
        type=Path,
        metavar="JSON",
        help="architecture JSON (model.to_json()); SRC is then the weights .h5",
    )
    source.add_argument(
        "--custom-objects",
        action="append",
        default=[],
        metavar="MODULE[:ATTR]",
        help="importable module defining custom layers/functions (all of its classes and "
        "functions, or ATTR: a dict, class or function); repeatable",
    )
    source.add_argument(
        "--unsafe",
        action="store_true",
        help="allow Lambda layers and other Python code stored in the file to run on load",
    )
    signature = parser.add_argument_group("signature")
    signature.add_argument(
        "--input-names",
        metavar="A,B|OLD=NEW,...",
        help="rename signature inputs, in order or by current name (default: Keras input names)",
    )
    signature.add_argument(
        "--output-name",
        help="signature key of a single-output model's output (default: the layer name)",
    )
    signature.add_argument(
        "--static-batch",
        action="store_true",
        help="keep the batch size recorded in the file (default: any batch size)",
    )
    add_destination_flags(parser)
    add_verify_flags(parser)
    add_debug_flag(parser)
    return parser


def _convert(args: argparse.Namespace) -> int:
    if args.debug:
        return _run(args)
    # Keras warns about legacy HDF5, skipped optimizer state, lambdas' modules: not
    # the user's problem once loading succeeded; --debug shows them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    # Imported here so --help and usage errors answer without loading TensorFlow.
    from converters.keras import custom_objects as keras_custom_objects
    from converters.keras import export as keras_export
    from converters.keras import loader as keras_loader
    from converters.keras import source as keras_source
    from converters.publish import plan_destination, staging_dir

    check_verify_flags(args)
    dest = plan_destination(args.models_dir, args.name, args.version, args.overwrite)
    source = keras_source.read_source(args.src, args.architecture)
    print(f"source:    {source.path} ({source.describe()})")
    import_tensorflow_quietly(args.debug)  # custom-object modules import it too
    custom_objects = keras_custom_objects.resolve(args.custom_objects)
    if custom_objects:
        print(f"custom:    {', '.join(sorted(custom_objects))}")
    if args.unsafe:
        print("unsafe:    code stored in the file is allowed to run (--unsafe)")

    loaded = keras_loader.load_model(source, custom_objects, unsafe=args.unsafe)
    print(f"loader:    {loaded.describe()}")
    plan = keras_export.plan_signature(
        loaded,
        input_names=args.input_names,
        output_name=args.output_name,
        static_batch=args.static_batch,
    )
    with staging_dir(dest) as staged:
        outputs = keras_export.export_saved_model(loaded, plan, staged)
        print(f"signature: {keras_export.SIGNATURE_KEY}")
        for sig in plan.inputs:
            print(f"  input    {sig.describe()}")
        for sig in outputs:
            print(f"  output   {sig.describe()}")
        if args.no_verify:
            print("verify:    not checked (--no-verify)")
        else:
            from converters.verify import verify_export

            batch_sizes = (1, 3)
            if args.static_batch and plan.inputs and plan.inputs[0].shape[:1] != (None,):
                batch_sizes = (plan.inputs[0].shape[0],)
            report = verify_export(
                staged,
                keras_export.reference_fn(loaded, plan),
                sample=args.sample,
                atol=args.atol,
                batch_sizes=batch_sizes,
            )
            print_verify_report(report)
        publish_and_report(staged, dest, args.base_path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `convert-h5` console script; returns the exit code."""
    return run_cli(_convert, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
