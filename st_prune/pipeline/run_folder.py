"""The run folder of ``st-prune run``: every path in it is defined here, once, and every record is read once.

::

    DIR/run.json                       recipe name + hash (a DIR holding another recipe's run is refused)
    DIR/recipe.yaml                    the resolved recipe (overrides applied)
    DIR/scan/scan.json, l3prune.png    per-layer losses, the picks, the curve; full-depth tokens/s
    DIR/stages/<stage>[.<variant>].json  each finished stage's marker: the key of its inputs, time, memory
    DIR/work/<variant>/prune.json      layers and parameters kept
    DIR/work/<variant>/adapter/        the trained LoRA adapter (small); train.json: settings, time, losses
    DIR/work/<variant>/checkpoints/    while training: a checkpoint every training.save_steps (a re-run resumes)
    DIR/work/<variant>/export.json     size on disk, tokens/s of the exported model
    DIR/work/<variant>/untrimmed/      the export, where a trim makes the model folder from it
    DIR/work/<variant>/trim.json       the trim's report, parameters and weight bytes of the trimmed folder
    DIR/work/<variant>/deploy.json     the backend files shipped (or not, and why), their agreement and speed
    DIR/work/<variant>/eval.json       main score per task (mteb results under DIR/results/)
    DIR/models/<repo-name>/            the model folder exactly as published (card + curve included)
    DIR/models/zoo.json, README.md     the index of the models in DIR/models/
    DIR/summary.json                   wall time and peak memory of every stage (also printed at the end)

Records are JSON files st-prune wrote itself (atomically), so they are cached after the first read; a write through
``write_record`` updates the cache, and a stage that rewrites a record by other means calls ``forget``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from st_prune.errors import StPruneError
from st_prune.util.files import read_json, write_json_atomic


class RunFolder:
    """The paths of one run folder and its records (cached: each is read once per run)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: dict[Path, Any] = {}

    # --- paths ------------------------------------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def recipe_file(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def summary_file(self) -> Path:
        return self.root / "summary.json"

    @property
    def scan_dir(self) -> Path:
        return self.root / "scan"

    @property
    def scan_record(self) -> Path:
        return self.scan_dir / "scan.json"

    @property
    def curve(self) -> Path:
        return self.scan_dir / "l3prune.png"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def stages_dir(self) -> Path:
        return self.root / "stages"

    @property
    def models_dir(self) -> Path:
        """Where the finished, Hub-shaped model folders (and their index) go."""
        return self.root / "models"

    def marker(self, stage: str, variant: str | None = None) -> Path:
        return self.stages_dir / (f"{stage}.{variant}.json" if variant else f"{stage}.json")

    def work(self, variant: str) -> Path:
        return self.root / "work" / variant

    def record_path(self, variant: str, record: str) -> Path:
        """``work/<variant>/<record>`` (``record`` is a file name such as ``prune.json``)."""
        return self.work(variant) / record

    # --- records ----------------------------------------------------------------------------------------
    def read(self, path: Path, *, missing: str | None = None) -> Any:
        """The JSON at ``path`` (cached); ``missing`` is the fix named when it does not exist (else None is returned)."""
        if path not in self._cache:
            if not path.is_file():
                if missing is None:
                    return None
                raise StPruneError(f"{path} is missing: {missing}")
            # Files the runner wrote itself (atomically); a damaged one only costs its stage a re-run.
            self._cache[path] = read_json(path, fix="delete it and run again to redo that stage")
        return self._cache[path]

    def write(self, path: Path, data: Any, *, sort_keys: bool = True) -> Any:
        write_json_atomic(path, data, sort_keys=sort_keys)
        self._cache[path] = data
        return data

    def forget(self, path: Path) -> None:
        """Drop ``path`` from the cache (it was rewritten by a library call, not ``write``)."""
        self._cache.pop(path, None)

    def record(self, variant: str, record: str, *, stage: str | None = None) -> Any:
        """A variant's record; with ``stage``, a missing record is one line naming the stage to run first."""
        fix = f"run the {stage} stage first (--only {stage})" if stage else None
        return self.read(self.record_path(variant, record), missing=fix)

    def write_record(self, variant: str, record: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write a stage's record to ``work/<variant>/<record>``, the file later stages and the card read."""
        return self.write(self.record_path(variant, record), data)

    def scan(self, *, required: bool = False) -> dict[str, Any] | None:
        return self.read(self.scan_record, missing="run the scan stage first (--only scan)" if required else None)

    def marker_data(self, stage: str, variant: str | None = None) -> dict[str, Any] | None:
        return self.read(self.marker(stage, variant))


def adopt_earlier_model_folders(ctx: Any) -> None:
    """Record the model folders of a run folder written before st-prune recorded what it wrote
    (``st_prune.util.ownership``), so that a stage re-run replaces them as before: a file there is st-prune's when a
    finished stage that writes the folder wrote its marker after it (markers are written last); one added later is
    the user's and stays."""
    from st_prune.util import ownership
    from st_prune.util.staging import is_staging_name

    for variant in ctx.recipe.variants:
        if ctx.layers_of(variant) is None:
            continue
        folders = {ctx.export_dir(variant): ("export",)}  # the model folder itself unless a trim makes it
        folders[ctx.zoo_dir(variant)] = ("export", "trim", "deploy", "card")
        for folder, stages in folders.items():
            markers = [ctx.folder.marker(stage, variant.name) for stage in stages]
            markers = [marker for marker in markers if marker.is_file()]
            if not folder.is_dir() or ownership.has_record(folder) or not markers:
                continue
            cutoff = max(marker.stat().st_mtime_ns for marker in markers)
            files = [
                path.relative_to(folder).as_posix()
                for path in folder.rglob("*")
                if path.is_file() and not any(is_staging_name(part) for part in path.relative_to(folder).parts)
            ]
            ownership.adopt(
                folder, files, by="run", legacy=lambda path, cutoff=cutoff: path.lstat().st_mtime_ns <= cutoff
            )
