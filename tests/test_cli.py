"""The one ``fashion-search`` command tree: help for every command, and no TensorFlow where no model is needed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from fashion_search.cli import build_parser, main

COMMANDS = ("run", "index", "query", "add", "remove", "compact", "info", "verify", "serve")


def test_help_lists_every_command_with_a_description_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("    ") and line.split()}
    for command in COMMANDS:
        assert command in lines and len(lines[command].split()) > 3, f"{command} has no description"


def test_no_command_prints_the_usage_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "usage: fashion-search" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and f"fashion-search {command}" in out
    assert "examples:" in out and out.split("examples:")[1].count(f"fashion-search {command}") >= 1


def modules_loaded_by(argv: list[str]) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after ``fashion-search <argv>``."""
    script = ("import sys\nfrom fashion_search.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
              "    pass\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)
    return set(result.stdout.split())


@pytest.mark.parametrize("argv", [["--help"], ["query", "--help"], ["run", "--help"]])
def test_help_loads_no_tensorflow(argv):
    loaded = modules_loaded_by(argv)
    assert "fashion_search" in loaded and not loaded & {"tensorflow", "keras"}


def test_info_on_an_index_loads_no_tensorflow(cli_index):
    index = cli_index("faiss")   # built by the CLI with efficientnet_lite0, no weights, 32 px
    loaded = modules_loaded_by(["info", "--index", str(index)])
    assert "faiss" in loaded and not loaded & {"tensorflow", "keras"}


def test_the_parser_knows_the_engine_and_the_pipeline():
    args = build_parser().parse_args(["run", "--only", "04,05", "--set", "seed=1"])
    assert args.only == "04,05" and args.overrides == ["seed=1"]
    args = build_parser().parse_args(["query", "photo.jpg", "--colour", "red"])
    assert args.photo == "photo.jpg" and args.colour == "red" and args.colour_weight is None


@pytest.mark.parametrize("argv, message", [
    (["serve", "--max-batch", "0"], "--max-batch: expected a whole number ≥ 1, got '0'"),
    (["serve", "--max-wait-ms", "nan"], "--max-wait-ms: expected a number ≥ 0, got 'nan'"),
    (["index", "photos", "--backend", "elastic"], "--backend: invalid choice: 'elastic'"),
])
def test_serving_and_backend_options_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_commands_that_load_tensorflow_print_none_of_its_loading_lines(tmp_path, photo_folder):
    done = subprocess.run([sys.executable, "-m", "fashion_search.cli", "index", str(photo_folder), "--index",
                           str(tmp_path / "index"), "--model", "efficientnet_lite0", "--weights", "none",
                           "--image-size", "32"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "indexed 25 products" in done.stdout
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard", "rebuild TensorFlow"):
        assert noise not in done.stderr, noise


@pytest.mark.parametrize("argv, usage, hint", [
    (["query", "photo.jpg", "--topk", "3"], "usage: fashion-search query", "--topk (did you mean --top-k?)"),
    (["info", "--jsn"], "usage: fashion-search info", "--jsn (did you mean --json?)"),
])
def test_an_unknown_option_gets_the_command_s_usage_and_the_closest_option(argv, usage, hint, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.startswith(usage) and hint in err


def test_every_option_and_argument_says_what_it_is(capsys):
    from fashion_search.cli import build_parser

    for name, command in build_parser().parse_args(["info"]).command_parsers.items():
        for action in command._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
