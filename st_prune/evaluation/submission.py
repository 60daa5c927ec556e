"""The MTEB leaderboard submission: a folder for one pull request to embeddings-benchmark/results and one to
embeddings-benchmark/mteb.

The results are copied in the results repository's layout, which is also the layout ``evaluate.evaluate_model``
writes (mteb's cache layout); only MTEB tasks go, local tasks' results stay out. The model is registered by a
``ModelMeta`` Python file written by mteb itself, and ``SUBMISSION.md`` lists the steps.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mteb
from mteb.cache.result_cache import CopyResultsAction
from mteb.models.model_meta import ModelMeta
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

from st_prune.errors import StPruneError
from st_prune.evaluation.model_meta import read_model_meta
from st_prune.evaluation.tasks import PAPER_URL, is_mteb_task
from st_prune.util import ownership
from st_prune.util.staging import new_staging_dir

logger = logging.getLogger(__name__)


@dataclass
class Submission:
    """What `prepare_submission` wrote."""

    output_dir: Path
    results_dir: Path
    registration_file: Path
    models: list[str]
    skipped_tasks: list[str]
    warnings: list[str]


def prepare_submission(
    results_root: str | Path,
    output_dir: str | Path,
    *,
    model_name: str | None = None,
) -> Submission:
    """Prepare a folder for pull requests to embeddings-benchmark/results and embeddings-benchmark/mteb.

    `results_root` is an `st-prune eval --output` folder. Written to `output_dir`: `results/` (the results of
    MTEB tasks in the results repository's layout, copied with mteb's own `CopyResultsAction`, with
    `model_meta.json`), `<org>_models.py` (the `ModelMeta` registration for
    `mteb/models/model_implementations/`) and `SUBMISSION.md` (the steps). Results of local tasks are left out.
    """
    results_root, output_dir = Path(results_root), Path(output_dir)
    if results_root.name == "results" and not (results_root / "results").is_dir():
        results_root = results_root.parent  # accept the `results` folder itself
    if not (results_root / "results").is_dir():
        raise StPruneError(f"{results_root} has no results/ folder: pass the --output folder of `st-prune eval`")
    if output_dir.resolve() == results_root.resolve() or output_dir.resolve().is_relative_to(
        (results_root / "results").resolve()
    ):
        raise StPruneError(
            f"--output {output_dir} is the results folder the submission is copied from; choose a "
            f"new folder, e.g. --output {results_root.resolve().parent / 'submission'}"
        )

    cache = mteb.ResultCache(results_root)
    metas = _submitted_model_metas(cache, model_name)
    copied: dict[ModelMeta, list[Path]] = {}
    skipped: set[str] = set()
    for meta in metas:
        paths = cache.get_cache_paths(models=[meta], require_model_meta=True, include_remote=False)
        skipped.update(path.stem for path in paths if not is_mteb_task(path.stem))
        paths = [path for path in paths if is_mteb_task(path.stem)]
        if paths:
            copied[meta] = paths
    if not copied:
        raise StPruneError(f"no MTEB task results under {results_root}: only MTEB tasks go to the leaderboard")

    submission_results = output_dir / "results"
    registration_file = output_dir / f"{_python_identifier(next(iter(copied)).name.split('/')[0])}_models.py"
    warnings = [
        f"{meta.name}: revision {meta.revision!r} is not a Hub commit; re-run `st-prune eval --revision <commit>` "
        "on the published model before opening the pull request"
        for meta in copied
        if not re.fullmatch(r"[0-9a-f]{40}", meta.revision or "")
    ]
    # Assembled beside the destination and moved in when complete: a full disk leaves no half submission, and
    # only files an earlier `st-prune submit` wrote there are replaced (st_prune.util.ownership).
    staging = new_staging_dir(output_dir)
    try:
        CopyResultsAction(copied, staging / "results").do()
        (staging / registration_file.name).write_text(render_model_registration(list(copied)))
        (staging / "SUBMISSION.md").write_text(_submission_instructions(list(copied), registration_file, warnings))
        ownership.install(staging, output_dir, by="submit", fix="choose another --output or move it away")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for warning in warnings:
        logger.warning(warning)
    return Submission(
        output_dir=output_dir,
        results_dir=submission_results,
        registration_file=registration_file,
        models=[str(meta.name) for meta in copied],
        skipped_tasks=sorted(skipped),
        warnings=warnings,
    )


def _submitted_model_metas(cache: mteb.ResultCache, model_name: str | None) -> list[ModelMeta]:
    models = sorted(cache.get_models(require_model_meta=False, include_remote=False))
    if model_name is not None:
        models = [(name, revision) for name, revision in models if name == model_name.replace("/", "__")]
        if not models:
            raise StPruneError(f"no results for {model_name} under {cache.cache_path}: check --model-name")
    metas = []
    for path_name, revision in models:
        meta_path = cache.cache_path / "results" / path_name / revision / "model_meta.json"
        if not meta_path.is_file():
            raise StPruneError(
                f"{meta_path.parent} has no model_meta.json: re-run `st-prune eval --model-name ORG/NAME` to write it"
            )
        fix = "re-run `st-prune eval` for this model into a new --output to write it again"
        data = read_model_meta(meta_path, fix=fix)
        try:
            metas.append(ModelMeta.model_validate_json_resolved(json.dumps(data)))
        except ValueError as error:  # pydantic's ValidationError: a field missing or of the wrong type
            problem = error.errors()[0] if hasattr(error, "errors") else {"loc": (), "msg": str(error)}
            where = ".".join(map(str, problem["loc"])) or "model_meta"
            raise StPruneError(
                f"{meta_path} is not a valid mteb ModelMeta ({where}: {problem['msg']}); {fix}"
            ) from None
    return metas


def render_model_registration(metas: Sequence[ModelMeta]) -> str:
    """Python source registering `metas` in mteb (`mteb/models/model_implementations/` style).

    Each `ModelMeta` is written by mteb's own `ModelMeta.to_python()`. Its loader, mteb's
    `SentenceTransformerEncoderWrapper`, builds a SentenceTransformer from the Hub and passes the recorded
    instructions as `model_prompts`.
    """
    blocks = [
        f'"""Models pruned with L3Prune ({PAPER_URL}) by st-prune.\n\n'
        "Copy this file to mteb/models/model_implementations/ in a fork of embeddings-benchmark/mteb.\n"
        '"""\n',
        "from __future__ import annotations\n",
        "from mteb.models.model_meta import ModelMeta, ScoringFunction",
        "from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper\n",
    ]
    variables: set[str] = set()
    for meta in metas:
        meta = meta.model_copy(update={"loader": SentenceTransformerEncoderWrapper})
        variable = base = _python_identifier(str(meta.name).split("/")[-1])
        while variable in variables:  # two orgs' models of one name, or two revisions of one model
            variable = f"{base}_{len(variables)}"
        variables.add(variable)
        blocks.append(f"\n{variable} = {meta.to_python()}\n")
    return "\n".join(blocks)


def _python_identifier(text: str) -> str:
    identifier = re.sub(r"\W+", "_", text).strip("_").lower() or "model"
    return f"m_{identifier}" if identifier[0].isdigit() else identifier


def _submission_instructions(metas: Sequence[ModelMeta], registration_file: Path, warnings: Sequence[str]) -> str:
    models = "\n".join(f"- `{meta.name}` (revision `{meta.revision}`)" for meta in metas)
    notes = "".join(f"\n> **Before submitting:** {warning}\n" for warning in warnings)
    return f"""# MTEB leaderboard submission

Models:
{models}
{notes}
1. Results: copy `results/` into a clone of https://github.com/embeddings-benchmark/results (it merges into
   its `results/` folder) and open a pull request.
2. Model: copy `{registration_file.name}` to `mteb/models/model_implementations/` in a clone of
   https://github.com/embeddings-benchmark/mteb and open a pull request. The leaderboard shows a model once
   both are merged.
3. Check `training_datasets` in the ModelMeta: it must list every MTEB task the training data overlaps.
"""
