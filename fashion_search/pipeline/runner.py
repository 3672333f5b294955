"""``fashion-search run``: the numbered notebooks in order with papermill, each exported to HTML.

    fashion-search run [--params params.yaml] [--set key=value ...] [--only STAGE,...] [--from STAGE] [--force]

Parameters are validated before anything runs. A stage whose parameters, notebook and
upstream stages are unchanged since it last finished is skipped (``--force`` re-runs it).
Exit codes: 0 done, 1 a notebook failed (the message names it and the cell), 2 bad
parameters or a missing dataset.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import textwrap
import time
from pathlib import Path

from fashion_search.data import check_catalogue
from fashion_search.io import write_json, write_text_atomic
from fashion_search.layout import RunLayout
from fashion_search.params import BACKBONE_RECIPES, ConfigError, Params
from fashion_search.params_file import label_columns_used, load_params, save_params
from fashion_search.pipeline.report import HEADLINE_FILE
from fashion_search.progress import MODE_VARIABLE

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
KERNEL_NAME = "fashion-search"
# Each stage, and the params.yaml blocks its results depend on (those of earlier stages included).
STAGES: dict[str, tuple[str, ...]] = {
    "01_data": ("seed", "data"),
    "02_finetune": ("seed", "data", "backbones", "finetune"),
    "03_extract_features": ("seed", "data", "backbones", "finetune", "features"),
    "04_evaluate": ("seed", "data", "backbones", "finetune", "features", "evaluate"),
    "05_visualise": ("seed", "data", "backbones", "finetune", "features", "evaluate", "visualise"),
    "06_search": ("seed", "data", "backbones", "finetune", "features", "evaluate", "visualise", "index"),
}
# Parameters a stage has for a person's own use in JupyterLab, set back for a run (06's panel over
# someone's own index would skip the run's sections)
RUN_ONLY_PARAMETERS = {"06_search": {"panel_index": None}}


class StageFailed(RuntimeError):
    """A notebook raised; the message names it and the cell."""


def resolve_stage(name: str) -> str:
    """Accept ``02``, ``finetune`` or ``02_finetune``."""
    for stage in STAGES:
        if name in (stage, stage[:2], stage[3:]):
            return stage
    raise ConfigError(f"unknown stage '{name}'; stages are {', '.join(STAGES)}")


def select_stages(only: list[str] | None, start: str | None) -> list[str]:
    names = list(STAGES)
    if only:
        chosen = {resolve_stage(n) for n in only}
        return [s for s in names if s in chosen]
    if start:
        return names[names.index(resolve_stage(start)):]
    return names


def stage_fingerprint(params: Params, stage: str) -> str:
    """Hash of the parameters the stage depends on and of its notebook's source."""
    blocks = {key: value for key, value in params.to_dict().items() if key in STAGES[stage]}
    notebook = (NOTEBOOKS_DIR / f"{stage}.ipynb").read_bytes()
    digest = hashlib.sha256(json.dumps(blocks, sort_keys=True).encode() + notebook)
    return digest.hexdigest()[:16]


def _read_stamp(paths: RunLayout, stage: str) -> dict | None:
    try:
        return json.loads(paths.stamp(stage).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_up_to_date(paths: RunLayout, params: Params, stage: str) -> bool:
    """Finished with the same inputs, and not older than any stage before it."""
    stamp = _read_stamp(paths, stage)
    if not stamp or stamp.get("fingerprint") != stage_fingerprint(params, stage):
        return False
    upstream = list(STAGES)[: list(STAGES).index(stage)]
    for earlier in upstream:
        before = _read_stamp(paths, earlier)
        if not before or before["finished"] > stamp["finished"]:
            return False
    return True


def ensure_kernel() -> str:
    """Register this interpreter's Jupyter kernel under ``fashion-search`` (inside its prefix)."""
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (fashion-search)", prefix=sys.prefix)
    return KERNEL_NAME


def local_kernel_manager() -> type:
    """A kernel manager whose kernels talk over Unix sockets in Jupyter's runtime folder
    (private to this user) instead of TCP ports on loopback, which ipykernel warns about.

    Each kernel's sockets get a name of their own there: jupyter_client would otherwise name them
    ``kernel-ipc-1`` … in the current folder, where two runs started from one folder take the same
    sockets and read each other's messages."""
    import uuid

    from jupyter_client import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            folder = Path(jupyter_runtime_dir())
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return str(folder / f"fs-{uuid.uuid4().hex[:12]}")   # short: a socket's path has at most 107 bytes

    return LocalKernelManager


def export_html(notebook: Path, target: Path) -> None:
    """Render an executed notebook to a standalone HTML report."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    write_text_atomic(target, body)


def run_stage(stage: str, paths: RunLayout, params: Params, verbose: bool = False) -> None:
    """Execute one notebook into the run folder and export it; raise StageFailed on error.

    What the notebook prints (progress lines, epochs) streams to this terminal as it runs;
    ``verbose`` streams its stderr (library warnings) too."""
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    executed = paths.notebooks / f"{stage}.ipynb"
    report = paths.reports / f"{stage}.html"
    paths.notebooks.mkdir(parents=True, exist_ok=True)
    paths.stamp(stage).unlink(missing_ok=True)
    try:
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / f"{stage}.ipynb"), str(executed),
            parameters={"params_path": str(paths.params), "run_dir": str(paths.root),
                        **RUN_ONLY_PARAMETERS.get(stage, {})},
            kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS_DIR), progress_bar=False,
            stdout_file=sys.stdout, stderr_file=sys.stderr if verbose else None,
            kernel_manager_class=local_kernel_manager(),
        )
    except PapermillExecutionError as err:
        export_html(executed, report)
        raise StageFailed(
            f"stage {stage} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}\n  executed notebook: {executed}\n  HTML report: {report}"
        ) from err
    except DeadKernelError as err:   # killed: out of memory, most often; work done so far is kept
        raise StageFailed(
            f"stage {stage} stopped: its Python kernel died ({err}), most often killed for lack of memory "
            f"(see `dmesg`); run the same command again to resume from the work saved so far\n"
            f"  partly executed notebook: {executed}") from err
    export_html(executed, report)
    write_json(paths.stamp(stage), {"fingerprint": stage_fingerprint(params, stage), "finished": time.time()})


def run_pipeline(params: Params, paths: RunLayout, stages: list[str], force: bool = False,
                 verbose: bool = False) -> list[str]:
    """Run the selected stages in order; return those that actually ran."""
    os.environ[MODE_VARIABLE] = "lines"  # the kernels' progress bars become lines that stream here
    paths.root.mkdir(parents=True, exist_ok=True)
    save_params(params, paths.params)
    ensure_kernel()
    ran: list[str] = []
    for stage in stages:
        if not force and not ran and is_up_to_date(paths, params, stage):
            print(f"[skip] {stage}: up to date (use --force to re-run)", flush=True)
            continue
        print(f"[run ] {stage}", flush=True)
        started = time.time()
        run_stage(stage, paths, params, verbose)
        print(f"[done] {stage} in {time.time() - started:.0f} s -> {paths.reports / (stage + '.html')}", flush=True)
        ran.append(stage)
    return ran


def preflight(params: Params) -> None:
    """Fail fast, before any notebook starts, if the catalogue's files or columns are missing,
    or if ``finetune.devices`` names more GPUs than there are."""
    try:
        check_catalogue(params.data, label_columns_used(params))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if isinstance(params.finetune.devices, int) and set(params.finetune.recipes) & set(BACKBONE_RECIPES):
        from fashion_search.pipeline.devices import DevicesError, device_names, visible_gpus

        try:
            device_names(params.finetune.devices, visible_gpus())
        except DevicesError as err:
            raise ConfigError(str(err)) from None


def run_command(args: argparse.Namespace) -> int:
    """``fashion-search run``: validate, check the catalogue, run the stages, print the mAP table.

    Bad parameters or a missing catalogue raise (the CLI prints them, exit code 2) before any
    notebook starts; a failing notebook gives exit code 1.
    """
    params = load_params(args.params, args.overrides)
    stages = select_stages(args.only.split(",") if args.only else None, args.start)
    preflight(params)
    paths = RunLayout(Path(args.outputs).resolve() / params.run)
    started = time.time()
    try:
        run_pipeline(params, paths, stages, force=args.force, verbose=args.verbose)
    except StageFailed as err:
        print(f"fashion-search: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and will be skipped next time", file=sys.stderr)
        return 130
    print(closing_summary(paths, time.time() - started))
    return 0


def closing_summary(paths: RunLayout, seconds: float) -> str:
    """What the terminal shows when a run ends: the headline mAP table, the unavailable
    backbones' note and where the HTML reports are."""
    lines = [f"pipeline finished in {seconds:.0f} s; results in {paths.root}", ""]
    headline = paths.metrics / HEADLINE_FILE
    if headline.is_file():  # tables as they are, sentences wrapped for the terminal
        lines += [line if line.startswith("|") else textwrap.fill(line, 100)
                  for line in headline.read_text().rstrip().splitlines()] + [""]
    reports = sorted(paths.reports.glob("*.html"))
    if reports:
        lines += ["HTML reports:", *(f"  {report}" for report in reports)]
    return "\n".join(lines)
