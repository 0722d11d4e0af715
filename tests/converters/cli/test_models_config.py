"""The models-config command, as a user types it."""

from __future__ import annotations

import subprocess

from converters.cli.models_config import main
from converters.models_config import ModelsConfig
from devtools.servers import script


def _version(root, name, version):
    folder = root / name / str(version)
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"")


def test_add_label_list_remove(tmp_path, capsys):
    cfg = tmp_path / "models.config"
    _version(tmp_path, "credit", 1)
    _version(tmp_path, "credit", 2)
    assert main(["--file", str(cfg), "add", "credit", "--policy", "latest:2"]) == 0
    assert main(["--file", str(cfg), "label", "credit", "stable=1", "canary=2"]) == 0
    assert main(["--file", str(cfg), "add", "churn"]) == 0
    capsys.readouterr()
    assert main(["--file", str(cfg), "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:6] == ["credit", "versions", "1,2", "policy", "latest", "2"]
    assert "stable=1 canary=2" in listing[0]
    assert listing[1].startswith("churn") and "versions none" in listing[1]

    assert main(["--file", str(cfg), "label", "credit", "--delete", "canary"]) == 0
    assert main(["--file", str(cfg), "remove", "churn"]) == 0
    config = ModelsConfig.load(cfg)
    assert config.names() == ["credit"]
    assert config.get("credit").labels == {"stable": 1}


def test_check_exit_codes(tmp_path, capsys):
    cfg = tmp_path / "models.config"
    _version(tmp_path, "credit", 1)
    main(["--file", str(cfg), "add", "credit"])
    assert main(["--file", str(cfg), "check"]) == 0
    main(["--file", str(cfg), "label", "credit", "canary=5"])
    capsys.readouterr()
    assert main(["--file", str(cfg), "check"]) == 1
    assert "label 'canary' points at version 5, not on disk" in capsys.readouterr().out


def test_bad_input_is_one_line_with_exit_code(tmp_path):
    cfg = tmp_path / "models.config"
    runs = {
        "bad name": (["add", "../etc"], 2, "invalid model name '../etc'"),
        "missing file": (["list"], 1, "no such models.config"),
        "bad label": (["add", "credit", "--label", "stable"], 2, "invalid label 'stable'"),
        "bad policy": (["add", "credit", "--policy", "newest"], 2, "invalid version policy"),
    }
    for what, (argv, code, message) in runs.items():
        result = subprocess.run(
            [script("models-config"), "--file", str(cfg), *argv], capture_output=True, text=True
        )
        assert result.returncode == code, what
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (what, result.stderr)
    assert not cfg.exists()

    cfg.write_text("model_config_list {")
    result = subprocess.run(
        [script("models-config"), "--file", str(cfg), "add", "x"], capture_output=True, text=True
    )
    assert result.returncode == 1 and "not a valid ModelServerConfig" in result.stderr
    assert cfg.read_text() == "model_config_list {"
