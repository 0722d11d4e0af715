"""Finding a checkpoint's files: every way users point at one, and every piece that goes missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters.ckpt.loader import locate_checkpoint, read_meta_graph
from converters.errors import ConversionError, UsageError


def _fake_checkpoint(folder: Path, name: str = "model.ckpt-7", shards: int = 1) -> Path:
    """The file layout tf.train.Saver leaves behind (contents do not matter for locating)."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in [".meta", ".index"] + [f".data-{i:05d}-of-{shards:05d}" for i in range(shards)]:
        (folder / f"{name}{suffix}").write_bytes(b"")
    return folder / name


@pytest.mark.parametrize("pointer", ["", ".meta", ".index", ".data-00000-of-00001"])
def test_prefix_or_any_of_its_files_names_the_checkpoint(tmp_path, pointer):
    prefix = _fake_checkpoint(tmp_path)
    files = locate_checkpoint(Path(f"{prefix}{pointer}"))
    assert files.prefix == prefix
    assert files.meta == tmp_path / "model.ckpt-7.meta"


def test_folder_state_file_written_on_another_machine_still_resolves(tmp_path):
    prefix = _fake_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoint").write_text(
        'model_checkpoint_path: "/home/trainer/jobs/run/model.ckpt-7"\n'
        'all_model_checkpoint_paths: "/home/trainer/jobs/run/model.ckpt-7"\n'
    )
    assert locate_checkpoint(tmp_path / "run").prefix == prefix


def test_relative_state_file_resolves_beside_it(tmp_path):
    prefix = _fake_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n')
    assert locate_checkpoint(tmp_path / "run").prefix == prefix


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (".meta", "needs the meta graph"),
        (".index", "copy the checkpoint's .index file"),
        (".data-00001-of-00002", "shard(s) missing: model.ckpt-7.data-00001-of-00002"),
    ],
)
def test_missing_piece_is_named(tmp_path, remove, message):
    prefix = _fake_checkpoint(tmp_path, shards=2)
    Path(f"{prefix}{remove}").unlink()
    with pytest.raises(UsageError) as info:
        locate_checkpoint(prefix)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_folder_without_state_file_says_to_pass_the_prefix(tmp_path):
    _fake_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="no 'checkpoint' file in this folder"):
        locate_checkpoint(tmp_path)


def test_corrupt_meta_graph_is_a_conversion_error(tmp_path):
    prefix = _fake_checkpoint(tmp_path)
    Path(f"{prefix}.meta").write_bytes(b"\xff\x00not a protobuf" * 3)
    with pytest.raises(ConversionError) as info:
        read_meta_graph(locate_checkpoint(prefix))
    assert info.value.exit_code == 1
    assert "model.ckpt-7.meta" in str(info.value)
