"""convert-ckpt: a TF1 checkpoint -> MODELS_DIR/NAME/N/ SavedModel + models.config entry."""

from __future__ import annotations

import argparse
import sys
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
from converters.errors import UsageError, VerificationError

_UNKNOWN_DIM = 8  # verification's size for a dimension nobody fixed (spatial dims, lengths)

EPILOG = """\
examples:
  convert-ckpt train/ --name ranker --list                # show candidate inputs/outputs
  convert-ckpt train/model.ckpt-1000 --name ranker \\
      --input features=Placeholder:0 --output probs=probs:0 --fixed is_training=false
  convert-ckpt train/ --name ranker --input x=IteratorGetNext:0 --output y=prediction:0

SRC is a checkpoint prefix (PREFIX.meta, PREFIX.index and PREFIX.data-* beside it) or a
folder whose 'checkpoint' file names the latest one. Without --input/--output the meta
graph's own signature_def is used, else the signature is detected from the graph: an output
must depend on an input and read trained variables (losses, metrics and label-dependent
tensors are set aside); when no candidate clearly wins, the candidates are printed with the
flags to pass (exit 2). Any tensor may be an input: one that is not a placeholder (a dataset
iterator's output) is replaced by a new placeholder. An input of unknown shape gets the
width the first MatMul, Conv, Reshape or set_shape fixes (--shape overrides). Verification
refuses (exit 1) outputs that ignore the inputs or read no trained variable unless
--allow-constant-output.

String and integer inputs are verified with values the graph holds ("probes:" line): the
keys of the lookup tables and vocabulary files the outputs read them through (plus one key
no table holds), and ids within the rows of the embedding they index. An output is refused
as constant only if those, two random batches and the --sample rows reordered all leave it
unchanged; one named with --output is kept with a warning when a table's keys cannot be
read and no --sample says otherwise. Vocabulary files are copied into the SavedModel's
assets/, so the served model needs nothing outside the models folder.
"""


def _key_tensor(flag: str):
    def parse(text: str) -> tuple[str, str]:
        key, sep, tensor = text.partition("=")
        key, tensor = key.strip(), tensor.strip()
        if not sep or not key or not tensor:
            raise UsageError(f"{flag} {text!r}: expected KEY=TENSOR, e.g. {flag} x=Placeholder:0")
        return key, tensor

    return parse


def _tensor_value(text: str) -> tuple[str, str]:
    tensor, sep, value = text.partition("=")
    if not sep or not tensor.strip() or not value.strip():
        raise UsageError(f"--fixed {text!r}: expected TENSOR=VALUE, e.g. --fixed is_training=false")
    return tensor.strip(), value.strip()


def _key_shape(text: str) -> tuple[str, tuple[int | None, ...]]:
    from converters.ckpt.export import parse_shape

    key, sep, dims = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--shape {text!r}: expected KEY=DIMS, e.g. --shape x=?,4")
    return key.strip(), parse_shape(dims)


def _to_dict(pairs: list[tuple[str, object]], flag: str) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise UsageError(f"{flag} {key}: given twice; each key once")
        result[key] = value
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "convert-ckpt",
        "Convert a TF1 checkpoint (meta graph + variables) into a TF Serving version folder "
        "with a serving_default signature.",
        EPILOG,
    )
    parser.add_argument(
        "src",
        type=Path,
        metavar="SRC",
        help="checkpoint prefix, or a folder with a 'checkpoint' file",
    )
    signature = parser.add_argument_group("signature")
    signature.add_argument(
        "--input",
        action="append",
        default=[],
        type=_key_tensor("--input"),
        metavar="KEY=TENSOR",
        help="signature input KEY fed into TENSOR (any tensor; op:0 or op); repeatable",
    )
    signature.add_argument(
        "--output",
        action="append",
        default=[],
        type=_key_tensor("--output"),
        metavar="KEY=TENSOR",
        help="signature output KEY read from TENSOR; repeatable",
    )
    signature.add_argument(
        "--fixed",
        action="append",
        default=[],
        type=_tensor_value,
        metavar="TENSOR=VALUE",
        help="feed a constant into a tensor that is not a serving input "
        "(is_training=false, keep_prob=1.0); repeatable",
    )
    signature.add_argument(
        "--shape",
        action="append",
        default=[],
        type=_key_shape,
        metavar="KEY=DIMS",
        help="shape of an input the graph leaves unknown, batch first (x=?,4); sets the "
        "signature and the verification inputs; repeatable",
    )
    signature.add_argument(
        "--list",
        action="store_true",
        help="print candidate inputs and outputs (and the meta graph's signature) and stop",
    )
    add_destination_flags(parser)
    for action in parser._actions:
        if action.dest == "name":  # --list needs no destination
            action.required = False
    verification = add_verify_flags(
        parser,
        # Here --sample also feeds the constant-output check.
        sample_help="inputs to compare on (and, rows reordered, to show the outputs follow "
        "them): .npz or .json mapping input names to arrays (default: random values, and for "
        "string and id inputs the values the graph holds)",
    )
    verification.add_argument(
        "--allow-constant-output",
        action="store_true",
        help="publish even if an output ignores the inputs or no trained variable is read "
        "(refused by default: such a signature is almost always the wrong tensor; the check "
        "feeds random values, the keys of the graph's tables, and --sample if given)",
    )
    add_debug_flag(parser)
    return parser


def _print_candidates(graph, meta_graph, fixed: Sequence[str], stream) -> None:
    from converters.ckpt.detect import find_candidates
    from converters.ckpt.signature import from_signature_def

    own = from_signature_def(meta_graph, {}) if meta_graph.signature_def else None
    if own is not None:
        print(f"meta graph signature ({own.source}):", file=stream)
        for label, side in (("input ", own.inputs), ("output", own.outputs)):
            for key, name in side.items():
                print(f"  {label} {key} <- {name}", file=stream)
    candidates = find_candidates(graph, fixed)
    for line in candidates.lines():
        print(line, file=stream)
    print(f"suggested flags: {candidates.suggestion()}", file=stream)


def _scratch_graph(files):
    """The graph as written, for naming tensors and detection (nothing restored)."""
    import tensorflow as tf

    from converters.ckpt.loader import import_graph

    graph = tf.Graph()
    with graph.as_default():
        import_graph(files)
    return graph


def _convert(args: argparse.Namespace) -> int:
    # Imported here so --help and usage errors answer without loading TensorFlow.
    from converters.ckpt.loader import locate_checkpoint, read_meta_graph, tensor_name
    from converters.publish import plan_destination, staging_dir

    inputs = _to_dict(args.input, "--input")
    outputs = _to_dict(args.output, "--output")
    fixed_text = _to_dict(args.fixed, "--fixed")
    shapes = _to_dict(args.shape, "--shape")
    check_verify_flags(args)
    if not args.list and not args.name:
        raise UsageError(
            "--name is required (the model's name in models.config), e.g. --name ranker"
        )
    dest = (
        None
        if args.list
        else plan_destination(args.models_dir, args.name, args.version, args.overwrite)
    )
    import_tensorflow_quietly(args.debug)
    files = locate_checkpoint(args.src)
    meta_graph = read_meta_graph(files)
    print(f"source:    {files.prefix} (meta graph {files.meta.name})")
    graph = _scratch_graph(files)
    if args.list:
        _print_candidates(graph, meta_graph, [tensor_name(t) for t in fixed_text], sys.stdout)
        return 0

    from converters.ckpt import export as ckpt_export
    from converters.ckpt.assets import check_assets
    from converters.ckpt.detect import AmbiguousSignatureError
    from converters.ckpt.probes import find_probes
    from converters.ckpt.signature import resolve

    try:
        plan = resolve(graph, meta_graph, inputs, outputs, fixed_text)
    except AmbiguousSignatureError as exc:
        for line in exc.candidates.lines():
            print(line, file=sys.stderr)
        raise
    signature_shapes = ckpt_export.serving_shapes(plan, _with_inferred(graph, plan, shapes))
    check_assets(graph)
    print(f"signature: {ckpt_export.SIGNATURE_KEY} ({plan.source})")
    with staging_dir(dest) as staged:
        summary = ckpt_export.export_checkpoint(files, plan, staged, signature_shapes)
        for line in summary.lines():
            print(line)
        for name, value in plan.fixed.items():
            print(f"  fixed  {name} = {value.tolist()!r}")
        print(f"variables: {summary.variables} restored from {files.prefix.name}")
        _check_reads_variables(files, summary.variables, args.allow_constant_output)
        if args.no_verify:
            print("verify:    not checked (--no-verify)")
        else:
            probes = find_probes(graph, plan)  # reads the vocabulary files: only to verify
            for line in probes.lines():
                print(f"probes:    {line}")
            _verify(
                args, files, plan, staged, signature_shapes, probes=probes, explicit=set(outputs)
            )
        publish_and_report(staged, dest, args.base_path)
    return 0


def _with_inferred(graph, plan, shapes: dict) -> dict:
    """--shape where given; else, for an input of unknown shape, what the graph fixes."""
    from converters.ckpt.shapes import infer_shape, needs_inference

    merged = dict(shapes)
    for key, name in plan.inputs.items():
        desc = plan.descs[name]
        if key in shapes or not needs_inference(desc):
            continue
        found = infer_shape(graph, name)
        if found is None or found.shape == desc.shape:
            print(
                f"shape:     {key} ({name}) has {desc.shape_text} and no op in the graph "
                f"fixes it; verification guesses (pass --shape {key}=?,N if it fails)"
            )
            continue
        print(f"shape:     {found.line(key)}")
        merged[key] = found.shape
    return merged


def _check_reads_variables(files, restored: int, allowed: bool) -> None:
    """A signature computed without the trained weights is not the model: refuse it."""
    import tensorflow as tf

    held = [n for n, _ in tf.train.list_variables(str(files.prefix))]
    if restored or not held or allowed:
        return
    raise VerificationError(
        f"the signature reads none of the {len(held)} variables in {files.prefix.name}, so it "
        "is not the trained model; pick the prediction with --output (see --list), or pass "
        "--allow-constant-output if that is really meant"
    )


def _verify(
    args, files, plan, staged: Path, signature_shapes: dict, *, probes, explicit: set[str]
) -> None:
    """Parity with the checkpoint at two batch sizes, then: do the outputs follow the inputs?

    Inputs the graph knows values for (table keys, embedding ids) are fed those, in both.
    """
    from converters.ckpt import export as ckpt_export
    from converters.ckpt.dependence import build_trials, check_dependence
    from converters.verify import DEFAULT_BATCH_SIZES, signature_specs, verify_export

    verify_shapes = {
        k: tuple(_UNKNOWN_DIM if d is None else d for d in s[1:])
        for k, s in signature_shapes.items()
        if s
    }
    pools = probes.pools()
    largest = max((len(p) for p in pools.values()), default=0)
    batch_sizes = (1, max(DEFAULT_BATCH_SIZES[-1], largest))
    with ckpt_export.reference_fn(files, plan) as reference:
        run = ckpt_export.guarded(reference, plan)
        report = verify_export(
            staged,
            run,
            sample=args.sample,
            atol=args.atol,
            shapes=verify_shapes,
            pools=pools,
            batch_sizes=batch_sizes,
        )
        print_verify_report(report)
        if args.allow_constant_output:
            print("verify:    constant outputs allowed (--allow-constant-output)")
            return
        specs = signature_specs(staged, ckpt_export.SIGNATURE_KEY)
        trials = build_trials(specs, verify_shapes, probes, args.sample)
        result = check_dependence(run, trials, probes, explicit)
    for key, why in result.unproven.items():
        print(
            f"verify:    output {key} gave identical values, but {why}; kept because you "
            "named it with --output"
        )
    if result.constant:
        raise result.error(plan)
    proof = result.proof()
    if proof:
        print(f"verify:    {proof}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `convert-ckpt` console script; returns the exit code."""
    return run_cli(_convert, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
