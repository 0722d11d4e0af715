"""Probe benchmark: what finding a graph's vocabulary values costs a convert-ckpt run.

In-process, no checkpoint: a TF1 graph whose string input is looked up in a vocabulary file
of --lines lines (TextFileInitializer) and a constant table of --keys keys
(KeyValueTensorInitializer), both feeding the output. Times
`converters.ckpt.probes.find_probes` (graph walk + reading both vocabularies) --repeat
times and prints each run with the probe line convert-ckpt would print.
Run: `python benchmarks/bench_probes.py` (see --help).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _graph(vocab_file: Path, keys: int):
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        words = v1.placeholder(tf.string, [None], name="words")
        from_file = tf.lookup.StaticVocabularyTable(
            tf.lookup.TextFileInitializer(
                str(vocab_file),
                tf.string,
                tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER,
            ),
            num_oov_buckets=1,
        )
        constant = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                [f"k{i}" for i in range(keys)], tf.range(keys, dtype=tf.int64)
            ),
            -1,
        )
        ids = from_file.lookup(words) + constant.lookup(words)
        tf.identity(tf.cast(ids, tf.float32), name="score")
    return graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="vocabulary file lines")
    parser.add_argument("--keys", type=int, default=100_000, help="constant table keys")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (first warms up)")
    args = parser.parse_args(argv)
    if min(args.lines, args.keys, args.repeat) < 1:
        parser.error("--lines, --keys and --repeat must be at least 1")

    from converters.ckpt.plan import SignaturePlan, describe
    from converters.ckpt.probes import find_probes

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "big.vocab"
        vocab_file.write_text("".join(f"word{i}\n" for i in range(args.lines)))
        graph = _graph(vocab_file, args.keys)
        plan = SignaturePlan({"words": "words:0"}, {"score": "score:0"})
        for name in ("words:0", "score:0"):
            plan.descs[name] = describe(graph, name)
        for _ in range(args.repeat):
            start = time.perf_counter()
            probes = find_probes(graph, plan)
            took = time.perf_counter() - start
            print(f"find_probes: {took * 1000:.0f} ms; {probes.lines()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
