"""The constant-output check with values the graph knows (issue 19): a string vocabulary
model is not constant because random strings miss its table, a constant one still is."""

from __future__ import annotations

import json

import pytest

from converters.models_config import ModelsConfig
from tests.converters.ckpt.helpers import convert, nothing_published


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("output", "tried"),
    [
        # reads only the table's default: "apple#" and the rest match no key
        (
            "default_only",
            "identical values for two random batches; values from the graph, words = 'apple', "
            "'banana', 'cherry', 'durian', '<unknown>'",
        ),
        # multiplies its input away and reaches no table: random strings are the evidence
        ("ignores", "identical values for two random batches)"),
    ],
)
def test_a_named_constant_output_is_still_refused_with_the_values_tried(
    vocab_ckpt, tmp_path, capsys, output, tried
):
    models = tmp_path / "models"
    assert convert(vocab_ckpt, models, "--name", "c", "--output", f"c={output}") == 1
    error = _error(capsys)
    assert error.startswith(f"convert-ckpt: error: output c ({output}:0) does not change")
    assert tried in error
    assert error.endswith("or pass --allow-constant-output if that is really meant")
    if output == "ignores":
        assert (
            "no lookup table or vocabulary is reached from string input words, so only random "
            "strings were tried; if it needs real values, pass them with --sample FILE.json"
        ) in error
    nothing_published(models, "c")


def test_unreadable_keys_refuse_a_detected_output_but_keep_a_named_one(
    unread_vocab_ckpt, tmp_path, capsys
):
    models = tmp_path / "models"
    assert convert(unread_vocab_ckpt, models, "--name", "w") == 1
    error = _error(capsys)
    assert "identical values for two random batches)" in error
    assert (
        "words is looked up in a table whose keys cannot be read here (table hash_table "
        "(HashTableV2) has no constant keys or vocabulary file (filled at run time or restored "
        "from the checkpoint)), so only random values were tried: pass real ones with --sample "
        "FILE.json"
    ) in error
    nothing_published(models, "w")

    assert convert(unread_vocab_ckpt, models, "--name", "w", "--output", "score=score") == 0
    out = capsys.readouterr().out
    assert "verify:    output score gave identical values, but words is looked up" in out
    assert "kept because you named it with --output" in out
    assert "follow the inputs" not in out  # nothing was shown to
    assert (models / "w" / "1" / "saved_model.pb").is_file()


def test_sample_rows_in_two_orders_show_the_output_follows_its_input(
    unread_vocab_ckpt, tmp_path, capsys
):
    sample = tmp_path / "words.json"
    sample.write_text(json.dumps({"words": ["apple", "cherry", "durian"]}))
    models = tmp_path / "models"
    assert convert(unread_vocab_ckpt, models, "--name", "w", "--sample", str(sample)) == 0
    out = capsys.readouterr().out
    assert "the --sample rows in two orders" in out

    same = tmp_path / "same.json"
    same.write_text(json.dumps({"words": ["apple", "apple"]}))  # no difference: no evidence
    assert convert(unread_vocab_ckpt, models, "--name", "w2", "--sample", str(same)) == 1
    assert "words is looked up in a table whose keys cannot be read" in _error(capsys)


def test_the_issue_19_command_converts(vocab_ckpt, tmp_path, capsys):
    models = tmp_path / "models"
    argv = ["--name", "words", "--input", "words=words:0", "--output", "score=score:0"]
    assert convert(vocab_ckpt, models, *argv) == 0
    out = capsys.readouterr().out
    assert (
        "verify:    outputs follow the inputs (tried two random batches; values from the "
        "graph, words = 'apple', 'banana', 'cherry', 'durian', '<unknown>')"
    ) in out
    assert ModelsConfig.load(models / "models.config").names() == ["words"]
