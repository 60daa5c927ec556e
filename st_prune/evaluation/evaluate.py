"""Running an MTEB evaluation of a pruned encoder: its tasks with their instructions as prompts, results on disk.

The flow is

    tasks = resolve_tasks("paper")                           # tasks: or "mteb-eng-v2", "SciFact,ArguAna", or
    tasks = [load_local_task("my.jsonl", "sts")]              # local_tasks: your own data
    meta = build_model_meta(model, name="org/model", revision="main", base_model="meta-llama/...")  # model_meta
    run = evaluate_model(model, tasks, meta=meta, output_dir="eval")
    print(results_table_markdown(run.results_dir))            # results

Everything runs on mteb 2.x and offline: Hub-hosted tasks need their datasets in the local cache (those that are
not are skipped and named together after the others ran), local tasks never touch the network.

Results land in mteb's cache layout, `<output_dir>/results/<org>__<model>/<revision>/<Task>.json` next to a
`model_meta.json`, which is also the layout of the embeddings-benchmark/results repository that
`submission.prepare_submission` copies into.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import mteb
from mteb.abstasks import AbsTask
from mteb.abstasks.task_metadata import TaskType
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from mteb.types import PromptType

from st_prune.errors import StPruneError
from st_prune.evaluation.local_tasks import LocalTask
from st_prune.evaluation.model_meta import read_model_meta
from st_prune.evaluation.prompts import build_task_prompts, prompt_key_task
from st_prune.evaluation.results import main_score
from st_prune.evaluation.tasks import is_mteb_task

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class EvaluationRun:
    """Where the results went and the main score of every task that ran."""

    results_dir: Path
    main_scores: dict[str, float] = field(default_factory=dict)
    task_types: dict[str, str] = field(default_factory=dict)


def model_results_dir(output_dir: str | Path, meta: ModelMeta) -> Path:
    """`<output_dir>/results/<org>__<model>/<revision>`: mteb's cache layout, also the results repository's."""
    return mteb.ResultCache(output_dir).get_task_result_path("_", meta).parent


def evaluate_model(
    model: SentenceTransformer,
    tasks: Sequence[AbsTask],
    *,
    meta: ModelMeta,
    output_dir: str | Path,
    batch_size: int = 32,
    overwrite: bool = False,
    template: str | None = None,
    show_progress_bar: bool = False,
) -> EvaluationRun:
    """Run `tasks` with mteb, instructions as prompts (in `template`, by default the model's own format), results and
    `model_meta.json` under `output_dir`.

    Tasks already in the results folder are skipped unless `overwrite`. Tasks whose Hub datasets are not in the
    local cache (offline) are skipped too, and reported together in one `StPruneError` after the others ran.
    """
    folders_before = _folders_under(output_dir)
    try:
        return _evaluate_model(
            model,
            tasks,
            meta=meta,
            output_dir=output_dir,
            batch_size=batch_size,
            overwrite=overwrite,
            template=template,
            show_progress_bar=show_progress_bar,
        )
    except BaseException:
        # A run that wrote no result leaves no empty results folders behind (only folders it created).
        _remove_new_empty_folders(output_dir, folders_before)
        raise


def _folders_under(root: str | Path) -> set[Path]:
    root = Path(root)
    return {root, *(path for path in root.rglob("*") if path.is_dir())} if root.is_dir() else set()


def _remove_new_empty_folders(root: str | Path, before: set[Path]) -> None:
    for folder in sorted(_folders_under(root) - before, key=lambda path: len(path.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            pass


def _evaluate_model(
    model: SentenceTransformer,
    tasks: Sequence[AbsTask],
    *,
    meta: ModelMeta,
    output_dir: str | Path,
    batch_size: int,
    overwrite: bool,
    template: str | None,
    show_progress_bar: bool,
) -> EvaluationRun:
    from st_prune.util.hub_offline import offline_unless_reachable

    cache = mteb.ResultCache(output_dir)
    prompts = build_task_prompts(tasks, model_prompts=model.prompts, template=template)
    meta = meta.model_copy(update={"loader_kwargs": {"model_prompts": _recorded_prompts(cache, meta, prompts)}})

    # The wrapper is what `mteb.evaluate(model)` builds itself; building it here lets the ModelMeta and the
    # prompts be set. Prompts are assigned after construction because the constructor drops keys that are not
    # registered mteb task names, which would lose the instructions of local tasks.
    encoder = SentenceTransformerEncoderWrapper(model)
    encoder.mteb_model_meta = meta
    encoder.model_prompts = prompts

    run = EvaluationRun(results_dir=model_results_dir(output_dir, meta))
    missing: list[AbsTask] = []
    # One probe of the Hub for all tasks, instead of each task's dataset load retrying for ~25 s without network.
    with offline_unless_reachable(needed=any(not isinstance(task, LocalTask) for task in tasks)):
        for task in tasks:
            written_before = _json_files(run.results_dir)
            try:
                result = mteb.evaluate(
                    encoder,
                    task,
                    cache=cache,
                    encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                    overwrite_strategy="always" if overwrite else "only-missing",
                    co2_tracker=False,  # codecarbon may try the network
                    show_progress_bar=show_progress_bar,
                )
            except BaseException as error:
                _remove_cut_short(run.results_dir, written_before)
                if not isinstance(error, Exception) or not _is_offline_error(error):
                    raise
                logger.warning("skipping %s: its dataset is not in the local cache", task.metadata.name)
                missing.append(task)
                continue
            for task_result in result.task_results:
                # Read back what was written (scores rounded to 6 digits), so this agrees with the reports.
                written = json.loads((run.results_dir / f"{task_result.task_name}.json").read_text())
                run.main_scores[task_result.task_name] = main_score(written["scores"])
                run.task_types[task_result.task_name] = str(task.metadata.type)
    if missing:
        raise StPruneError(_missing_datasets_message(missing, run.results_dir if run.main_scores else None))
    return run


def _json_files(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.glob("*.json")} if folder.is_dir() else {}


def _remove_cut_short(folder: Path, before: dict[Path, int]) -> None:
    """Remove the JSON files a failed task left half written (a full disk, a file-size limit): a task result cut
    short would read as done, or fail, on the next run. Whole files, and files the task did not touch, stay."""
    from st_prune.util.file_integrity import json_problem

    for path, modified in _json_files(folder).items():
        if before.get(path) != modified and json_problem(path) is not None:
            path.unlink(missing_ok=True)


def _recorded_prompts(cache: mteb.ResultCache, meta: ModelMeta, prompts: Mapping[str, str]) -> dict[str, str]:
    """Prompts for `model_meta.json`: those of earlier runs into the same folder plus this run's.

    Each run rewrites `model_meta.json`; merging keeps the instructions of every task in the folder, which the
    registration file needs. Keys that are not mteb tasks (local tasks) are left out: mteb would reject them.
    """
    meta_path = cache.get_task_result_path("_", meta).parent / "model_meta.json"
    earlier: dict[str, str] = {}
    if meta_path.is_file():
        meta = read_model_meta(meta_path, fix="delete it (st-prune eval writes it again) or choose another --output")
        earlier = (meta.get("loader_kwargs") or {}).get("model_prompts") or {}
    return {key: value for key, value in {**earlier, **prompts}.items() if _is_mteb_prompt_key(key)}


def _is_mteb_prompt_key(key: str) -> bool:
    """Keys mteb accepts in `model_prompts`: task names, task and prompt types, optionally with `-query`/`-document`."""
    base = prompt_key_task(key)
    return base in {p.value for p in PromptType} or base in _task_types() or is_mteb_task(base)


def _task_types() -> set[str]:
    return set(get_args(TaskType))


def _is_offline_error(error: BaseException) -> bool:
    """Whether loading failed because the Hub could not be reached (offline mode or no network)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionError | OfflineModeIsEnabled | LocalEntryNotFoundError):
            return True
        if type(seen).__name__ in ("ConnectError", "ConnectTimeout", "ConnectionError"):  # requests / httpx
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _missing_datasets_message(tasks: Sequence[AbsTask], results_dir: Path | None) -> str:
    datasets = sorted({(t.metadata.dataset["path"], t.metadata.dataset.get("revision", "main")) for t in tasks})
    listed = ", ".join(f"{path}@{revision}" for path, revision in datasets)
    example_path, example_revision = datasets[0]
    return (
        f"{len(tasks)} task(s) skipped ({', '.join(t.metadata.name for t in tasks)}): their datasets are not in the "
        f"local Hugging Face cache and the Hub is unreachable: {listed}. Run the same command once with network "
        f"access (HF_HUB_OFFLINE unset) to cache them, or pre-download each, e.g. `hf download --repo-type dataset "
        f"{example_path} --revision {example_revision}`"
        + (f"; the other tasks' results are in {results_dir}" if results_dir else "")
    )
