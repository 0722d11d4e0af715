"""`graph-service` flags: tensorflow_model_server's names, one-line errors, exit code 2."""

from __future__ import annotations

import subprocess

import pytest

from devtools.servers import script
from graph_service.cli import build_parser, main, settings_from_args


def test_help_names_tensorflow_model_server_flags(capsys):
    """shared doc Process and flags: the same flag names as tensorflow_model_server."""
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in (
        "--model_config_file",
        "--rest_api_port",
        "--model_config_file_poll_wait_seconds",
        "--file_system_poll_wait_seconds",
        "--rest_api_timeout_in_ms",
        "--model_name",
        "--model_base_path",
        "--model_max_inflight",
        "/monitoring/prometheus/metrics",
    ):
        assert flag in text


def test_help_says_the_ports_open_once_the_models_have_loaded(capsys):
    """The start-up order a caller or a readiness probe sees, and the exit code of a taken port."""
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "every model in the config loads first, then the gRPC port" in text
    assert "Until then both refuse connections" in text
    assert "4 no loadable model version or --port / --rest_api_port already taken" in text


def test_equals_form_and_defaults_match_tf_serving(tmp_path):
    """TF Serving defaults: REST 8501, file system poll 1 s, config poll 0 (never), timeout 30 s."""
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/models/m" } }')
    settings = settings_from_args(build_parser().parse_args([f"--model_config_file={config}"]))
    assert settings.rest_api_port == 8501
    assert settings.file_system_poll_wait_seconds == 1.0
    assert settings.model_config_file_poll_wait_seconds == 0.0
    assert settings.timeout_seconds == 30.0


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ([], False),
        (["--allow_version_labels_for_unavailable_models"], True),
        (["--allow_version_labels_for_unavailable_models=true"], True),
        (["--allow_version_labels_for_unavailable_models=false"], False),
    ],
)
def test_bool_flags_take_tf_serving_forms(tmp_path, flag, expected):
    """tensorflow_model_server's bool flags come bare or as `=true`/`=false` (the production
    image passes `--allow_version_labels_for_unavailable_models=true`)."""
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/models/m" } }')
    args = build_parser().parse_args([f"--model_config_file={config}", *flag])
    assert settings_from_args(args).allow_version_labels_for_unavailable_models is expected


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "pass --model_config_file"),
        (
            ["--model_name=m", "--allow_version_labels_for_unavailable_models=maybe"],
            "true or false",
        ),
        (["--model_config_file=/nonexistent/models.config"], "no such models.config"),
        (["--model_name=m"], "needs both"),
        (["--model_name=m", "--model_base_path=/nonexistent"], "no such folder"),
        (["--model_name=../x", "--model_base_path=."], "invalid model name"),
        (["--model_name=m", "--model_base_path=.", "--rest_api_port=70000"], "--rest_api_port"),
        (["--model_name=m", "--model_base_path=.", "--model_max_inflight=-1"], "0 (auto)"),
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert err.count("\n") == 0


def test_empty_or_broken_config_exits_2(tmp_path, capsys):
    config = tmp_path / "models.config"
    config.write_text("")
    assert main([f"--model_config_file={config}"]) == 2
    assert "lists no model" in capsys.readouterr().err
    config.write_text("model_config_list { config { name: ")
    assert main([f"--model_config_file={config}"]) == 2
    assert "not a valid ModelServerConfig" in capsys.readouterr().err


def test_console_script_exit_code():
    """The installed console script exits 2 on a usage error."""
    result = subprocess.run([script("graph-service")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--model_config_file" in result.stderr
