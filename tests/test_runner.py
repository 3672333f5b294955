"""The pipeline runner's command line: validation, exit codes and stage selection."""
import subprocess
import sys

import pytest
import yaml

from fashion_search.params import ConfigError
from fashion_search.params_file import parse_params
from fashion_search.pipeline.runner import STAGES, is_up_to_date, select_stages, stage_fingerprint
from fashion_search.layout import RunLayout


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fashion_search.cli", "run", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_bad_params_exit_2_with_a_message_naming_the_key(tmp_path, raw_params):
    raw_params["finetune"]["frozen_epochs"] = "three"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params))
    result = run_cli("--params", str(path), "--outputs", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "finetune.frozen_epochs" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # rejected before any work started


def test_bad_override_exits_2(params_file, tmp_path):
    result = run_cli("--params", str(params_file), "--set", "evaluate.ks=[0]", "--outputs", str(tmp_path / "o"))
    assert result.returncode == 2 and "evaluate.ks" in result.stderr


def test_missing_dataset_exits_2_naming_the_package(tmp_path, raw_params):
    empty = tmp_path / "empty"
    empty.mkdir()
    raw_params["data"]["path"] = str(empty)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params))
    result = run_cli("--params", str(path), "--outputs", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "dataset-fashion-mnist" in result.stderr and "Traceback" not in result.stderr


def test_missing_params_file_exits_2(tmp_path):
    result = run_cli("--params", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_stage_selection():
    assert select_stages(None, None) == list(STAGES)
    assert select_stages(["05", "finetune"], None) == ["02_finetune", "05_visualise"]
    assert select_stages(None, "04_evaluate") == ["04_evaluate", "05_visualise", "06_search"]
    with pytest.raises(ConfigError, match="unknown stage"):
        select_stages(["07"], None)


def test_stage_fingerprint_depends_only_on_the_stage_inputs(raw_params):
    base = parse_params(raw_params)
    raw_params["visualise"]["top_k"] = 3
    changed = parse_params(raw_params)
    assert stage_fingerprint(base, "04_evaluate") == stage_fingerprint(changed, "04_evaluate")
    assert stage_fingerprint(base, "05_visualise") != stage_fingerprint(changed, "05_visualise")


def test_a_stage_is_stale_when_an_earlier_one_finished_after_it(tmp_path, raw_params):
    params = parse_params(raw_params)
    layout = RunLayout(tmp_path)
    layout.notebooks.mkdir(parents=True)
    for stage, finished in (("01_data", 10.0), ("02_finetune", 20.0)):
        layout.stamp(stage).write_text(
            f'{{"fingerprint": "{stage_fingerprint(params, stage)}", "finished": {finished}}}')
    assert is_up_to_date(layout, params, "02_finetune")
    layout.stamp("01_data").write_text(f'{{"fingerprint": "{stage_fingerprint(params, "01_data")}", "finished": 30}}')
    assert not is_up_to_date(layout, params, "02_finetune")


def test_a_kernel_killed_mid_stage_is_a_message_not_a_traceback(params_file, tmp_path):
    """What the out-of-memory killer does to a long stage: the run says so, keeps its work, exits 1."""
    import time

    import psutil

    run = subprocess.Popen([sys.executable, "-m", "fashion_search.cli", "run", "--params", str(params_file),
                            "--outputs", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    deadline = time.monotonic() + 90
    killed = False
    while not killed and time.monotonic() < deadline and run.poll() is None:
        for child in psutil.Process(run.pid).children(recursive=True):
            if "ipykernel" in " ".join(child.cmdline()):
                time.sleep(1.0)   # the kernel at work on the stage
                child.kill()
                killed = True
                break
        time.sleep(0.1)
    out, err = run.communicate(timeout=120)
    assert killed and run.returncode == 1, (out, err)
    assert "kernel died" in err and "lack of memory" in err and "Traceback" not in err


def test_a_run_sets_the_panels_own_index_back_so_search_keeps_its_sections(tmp_path, monkeypatch):
    """06's ``panel_index`` is for JupyterLab; a run passes it as None whatever the notebook's default."""
    import shutil

    import papermill

    from fashion_search.params_file import load_params
    from fashion_search.pipeline import runner

    given = {}

    def execute(source, executed, parameters, **_):
        given.update(parameters)
        shutil.copy(source, executed)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    layout = RunLayout(tmp_path / "run")
    runner.run_stage("06_search", layout, load_params(runner.NOTEBOOKS_DIR.parent / "params.yaml"))
    assert given["panel_index"] is None and given["run_dir"] == str(layout.root)
    given.clear()
    runner.run_stage("04_evaluate", layout, load_params(runner.NOTEBOOKS_DIR.parent / "params.yaml"))
    assert "panel_index" not in given   # only the stage that has it


def test_each_kernel_talks_over_sockets_of_its_own_and_leaves_nothing_in_the_current_folder(tmp_path, monkeypatch):
    """Two runs started from one folder must not share a kernel's sockets (they read each other's messages)."""
    import asyncio
    import os
    from pathlib import Path

    from fashion_search.pipeline.runner import local_kernel_manager

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))

    async def two_kernels() -> list[tuple[str, list[int]]]:
        managers = [local_kernel_manager()(kernel_name="python3") for _ in range(2)]
        await asyncio.gather(*(km.start_kernel() for km in managers))
        try:
            for km in managers:
                client = km.client()
                client.start_channels()
                await client.wait_for_ready(timeout=60)
                client.stop_channels()
            return [(km.ip, [km.shell_port, km.iopub_port, km.stdin_port, km.hb_port, km.control_port])
                    for km in managers]
        finally:
            await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers))

    (first, _), (second, _) = asyncio.run(two_kernels())
    assert first != second
    assert all(Path(ip).parent == tmp_path / "runtime" for ip in (first, second))
    assert len(first) + len("-5") < 107   # a Unix socket's path limit
    assert os.listdir(tmp_path) == ["runtime"]
