"""Model cards for pruned encoders.

A card is rendered from ``st_prune/card/templates/model_card.md.j2`` (jinja2, ``StrictUndefined``: a missing
value is an error, never an empty spot). It builds on sentence-transformers' own model-card data: the
exported model's ``model.model_card_data`` gets the card's fields (name, id, base model, licence, language,
tags) and its ``to_dict()`` supplies the architecture, dimensions, similarity and library versions; the
template adds the pruning data, the L3Prune curve, training details, the evaluation table, usage with the
saved prompts, the paper's citation and the base model's licence terms. The YAML front matter (Hub
metadata incl. ``model-index``) is rendered by huggingface_hub's ``ModelCardData``/``EvalResult``.

``check_card`` rejects anything that must not be published: unfilled placeholders, ``TODO``, local paths of
the build machine and Hugging Face tokens.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from st_prune.errors import StPruneError
from st_prune.model.dtypes import saved_weights
from st_prune.util.local_only import load_model_folder

TEMPLATE_NAME = "model_card.md.j2"
CURVE_FILE = "l3prune.png"
BASE_TAGS = ("sentence-transformers", "feature-extraction", "sentence-similarity", "l3prune", "pruned")


# --------------------------------------------------------------------------------------------- checks
def forbidden_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """What a published card must never contain, with a name for the error message."""
    patterns = [
        ("an unfilled template placeholder", re.compile(r"\{\{\s*[A-Za-z_]|\{%|\{#|<placeholder>|\bPLACEHOLDER\b")),
        ("a TODO", re.compile(r"\bTODO\b|\bFIXME\b")),
        ("a temporary path", re.compile(r"/tmp/|/var/folders/")),
        ("a root home path", re.compile(r"/root/")),
        ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{8,}")),
        ("a local home path", re.compile(r"/home/[^/\s]+/|/Users/[^/\s]+/|[A-Za-z]:\\\\Users\\\\")),
    ]
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
        patterns.append(("the build machine's home directory", re.compile(re.escape(home.rstrip("/") + "/"))))
    return patterns


def check_card(text: str, extra_forbidden: tuple[str, ...] = ()) -> str:
    """Return ``text`` if it is safe to publish; raise `StPruneError` naming the first problem otherwise."""
    for label, pattern in forbidden_patterns():
        match = pattern.search(text)
        if match:
            line = text.count("\n", 0, match.start()) + 1
            raise StPruneError(f"the model card contains {label} at line {line}; fix the recipe or the template")
    for needle in extra_forbidden:
        if needle and needle in text:
            line = text.count("\n", 0, text.index(needle)) + 1
            raise StPruneError(f"the model card contains a local path at line {line}; fix the recipe or the template")
    return text


# --------------------------------------------------------------------------------------------- render
def load_template() -> jinja2.Template:
    """The card template shipped inside the package (``st_prune/card/templates``)."""
    source = resources.files(__package__).joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8")
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # Prompts end in " →": show it as written, not as the JSON escape "\u2192".
    environment.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    return environment.from_string(source)


def front_matter(context: dict[str, Any]) -> str:
    """Hub metadata as YAML, with evaluation results in ``model-index`` form (huggingface_hub renders it)."""
    from huggingface_hub import EvalResult, ModelCardData

    eval_results = [
        EvalResult(
            task_type=row["type"],  # mteb task types are the Hub model-index names
            dataset_type=row["dataset_type"],
            dataset_name=row["task"],
            dataset_split="test",
            metric_type=row["metric"],
            metric_value=row["score"],
        )
        for row in context["evaluation"]["rows"]
    ]
    data = ModelCardData(
        model_name=context["repo_id"],
        base_model=context["base_model"],
        base_model_relation="finetune",
        library_name="sentence-transformers",
        pipeline_tag="sentence-similarity",
        tags=context["tags"],
        license=context["license"],
        language=context["language"],
        datasets=context["datasets"] or None,
        eval_results=eval_results or None,
    )
    if context["license_link"]:
        data.license_link = context["license_link"]
    return data.to_yaml()


def render_card(context: dict[str, Any], extra_forbidden: tuple[str, ...] = ()) -> str:
    """The full README.md: front matter, then the template; checked with `check_card`."""
    body = load_template().render(**context)
    text = f"---\n{front_matter(context)}\n---\n\n{body.strip()}\n"
    return check_card(text, extra_forbidden)


# ----------------------------------------------------------------------------------------------- data
def megabytes(num_bytes: int) -> str:
    return f"{num_bytes / 1024**2:,.1f} MB"


def millions(count: int) -> str:
    if count < 1e6:
        return f"{count:,}"
    return f"{count / 1e6:,.1f}M" if count < 1e9 else f"{count / 1e9:,.2f}B"


def _public_name(path_text: str) -> str:
    """A data file/folder named without the build machine's path."""
    return Path(path_text).name or path_text


def card_context(
    recipe: Any,
    variant: Any,
    *,
    repo_id: str,
    folder: Path,
    scan: dict[str, Any],
    records: dict[str, dict[str, Any] | None],
    run_dir: Path,
    speed_documents: int,
) -> dict[str, Any]:
    """Everything the template shows for one variant: ``recipe`` and ``variant`` are the recipe's specs, ``scan`` and
    ``records`` the stage records (``stage_records``), ``folder`` the exported model folder, ``run_dir`` the run
    folder the evaluation record's results path is relative to, ``speed_documents`` how many texts tokens/s timed."""
    from st_prune.evaluation.tasks import PAPER_CITATION, PAPER_URL

    prune, train, export = records["prune"], records["train"], records["export"]
    assert prune is not None and train is not None and export is not None
    evaluation = records.get("eval")

    # sentence-transformers' card data: set our fields on it, read the model facts it derives.
    model = load_model_folder(folder)
    card_data = model.model_card_data
    card_data.model_name = f"{recipe.base_short_name} pruned to {prune['layers']} layers (L3Prune {variant.name})"
    card_data.model_id = repo_id
    card_data.base_model = recipe.base_id
    card_data.license = recipe.card.license
    card_data.language = list(recipe.card.language)
    tags = list(BASE_TAGS) + (["mteb"] if evaluation else [])
    card_data.tags = tags
    st_facts = card_data.to_dict()

    full_layers, layers = scan["num_layers"], prune["layers"]
    trim, deployed = records.get("trim"), records.get("deploy")
    # The folder as shipped: the trim's record where the variant was trimmed, else the export's
    # (what RunContext.final_record reads for the other stages).
    full_params, params = scan["parameters_full"], (trim or export)["parameters"]
    speed_full, speed = scan["tokens_per_second_full"], export["tokens_per_second"]
    weights = saved_weights(folder)  # read back from the files that ship: their real dtype and size on disk
    pruning = {
        "layers": layers,
        "num_layers": full_layers,
        "layers_pct": 100 * layers / full_layers,
        "parameters": millions(params),
        "parameters_full": millions(full_params),
        "pruned_pct": 100 * (1 - params / full_params),
        "weight_size": megabytes(weights["bytes"]),
        "weight_dtype": weights["dtype"],
        "tokens_per_second": f"{speed:,.0f}",
        "tokens_per_second_full": f"{speed_full:,.0f}",
        "speedup": speed / speed_full if speed_full else 0.0,
        "machine": export["machine"],
        "speed_documents": speed_documents,
        # A width cut (issue 25.4): channels of every kept layer's MLP; None at full width.
        "mlp": prune.get("width"),
        "how": (
            f"L3Prune's {variant.pick} pick"
            if variant.pick
            else f"a fixed {variant.layers}-layer cut"
            if variant.layers
            else f"a fixed pruning fraction of {variant.fraction:g} (keeps int(L × (1 − p)) layers)"
        ),
        "small": scan["small"],
        "large": scan["large"],
    }
    settings = train["settings"]
    lora = settings["lora"]
    max_seq_length = settings["max_seq_length"] or recipe.base.max_seq_length
    hyper = [
        ("Steps", train["steps"]),
        ("Batch size", settings["batch_size"]),
        ("Learning rate", settings["learning_rate"]),
        ("Warm-up steps", settings["warmup_steps"]),
        ("Scheduler", "linear decay after warm-up"),
        ("Optimizer", "AdamW (transformers default)"),
        ("Loss", f"MultipleNegativesRankingLoss (InfoNCE with hard negatives), scale {settings['scale']:g}"),
        (
            "LoRA",
            f"r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, on {', '.join(train['lora_target_modules'])}",
        ),
        ("Max sequence length", max_seq_length),
        ("Pooling", f"{recipe.base.pooling.replace('_', ' ')} (instruction tokens excluded)"),
        ("Precision", _precision(train)),
        ("Gradient checkpointing", "yes" if settings["gradient_checkpointing"] else "no"),
        ("Seed", settings["seed"]),
        ("Final training loss", train["train_loss"]),
    ]
    distillation = train.get("distillation")
    if distillation and distillation.get("self"):  # the recipe's `recover: distill` (st_prune.training.self_distill)
        hyper.insert(
            7,
            (
                "Recovery",
                (
                    f"self-distillation: + {distillation['weight']:g} × {distillation['distance']} distance to the embeddings "
                    f"of the uncut base ({distillation['teacher_layers']} layers)"
                ),
            ),
        )
        hyper.insert(
            8,
            (
                "Teacher's cost",
                (
                    f"{distillation['teacher_texts']} training texts embedded once by the uncut base in "
                    f"{distillation['teacher_seconds']:.0f} s"
                ),
            ),
        )
    elif distillation:  # beyond the paper: the recipe's `distill` section (st_prune.training.distillation)
        hyper.insert(
            7,
            (
                "Distillation",
                (
                    f"+ {distillation['weight']:g} × {distillation['distance']} distance to the embeddings of the trained "
                    f"`{distillation['teacher']}` variant ({distillation['teacher_layers']} layers), computed once in "
                    f"{distillation['teacher_seconds']:.0f} s (EmbedDistillLoss)"
                ),
            ),
        )
    scan_settings = scan["settings"]
    datasets = list(recipe.data.names)
    eval_context = evaluation_context(evaluation, run_dir, _local_names(recipe))
    prompts = {key: value for key, value in model.prompts.items() if value}
    return {
        "repo_id": repo_id,
        "title": f"{recipe.base_short_name} L3Prune {variant.name} ({layers}/{full_layers} layers)",
        "variant": variant.name,
        "base_model": recipe.base_id,
        # A trained sentence-transformers embedder as the base (issue 25): its config says so (st_prune.cut_from).
        "base_kind": "sentence-transformers embedder" if _cut_from_embedder(folder) else "decoder LLM",
        "base_short_name": recipe.base_short_name,
        "recipe_name": recipe.name,
        "license": recipe.card.license,
        "license_link": recipe.card.license_link,
        "license_terms": recipe.card.license_terms,
        "language": list(recipe.card.language),
        "datasets": datasets,
        "tags": tags,
        "paper_url": PAPER_URL,
        "citation": PAPER_CITATION,
        "pruning": pruning,
        "scan": {
            "batch_size": scan_settings["batch_size"],
            "num_batches": scan_settings["num_batches"],
            "scale": scan_settings["scale"],
            "seed": scan_settings["seed"],
            "confidence": scan.get("pick_confidence"),  # None for scans written before the bootstrap existed
        },
        "curve_file": CURVE_FILE,
        "training": {
            "steps": train["steps"],
            "hyperparameters": hyper,
            "seconds": train["seconds"],
            "minutes": train["seconds"] / 60,
            "machine": train["machine"],
            "data": recipe.data.description or (", ".join(datasets) if datasets else _public_name(recipe.data.path)),
            "triplets": train["triplets"],
            "instruction_groups": train["datasets"],
            "budget": _budget(
                train["steps"],
                settings["batch_size"],
                max_seq_length,
                train["triplets"],
                processes=train.get("processes", 1),
            ),  # records before 2026-11-30 ran on one
        },
        "evaluation": eval_context,
        "trim_section": _trim_section(trim),
        "deployment": _deployment(deployed),
        "prompts": prompts,
        "query_prompt": prompts.get("query", ""),
        "st": {
            "dimension": st_facts.get("output_dimensionality"),
            "max_seq_length": st_facts.get("model_max_length"),
            "similarity": st_facts.get("similarity_fn_name") or "Cosine Similarity",
            "architecture": st_facts.get("model_string", ""),
            "versions": st_facts.get("version") or {},
        },
    }


def evaluation_context(evaluation: dict[str, Any] | None, run_dir: Path, local_names: set[str]) -> dict[str, Any]:
    """The card's results table and model-index rows, from the evaluate stage's record (``eval.json``): its tasks
    only. The results folder also keeps the files of earlier evaluations, whose task list may have been another."""
    from st_prune.evaluation.results import results_table_markdown

    context: dict[str, Any] = {"table": "", "rows": [], "average": None}
    if not evaluation:
        return context
    results_dir = run_dir / evaluation["results_dir"]
    context["table"] = results_table_markdown(
        results_dir, task_types=evaluation["task_types"], task_names=list(evaluation["scores"])
    ).strip()
    context["average"] = evaluation["average"]
    for task, score in evaluation["scores"].items():
        context["rows"].append(
            {
                "task": task,
                "type": evaluation["task_types"].get(task, "Custom"),
                "dataset_type": task if "/" in task else f"mteb/{task}" if task not in local_names else task,
                "metric": evaluation["main_score_names"].get(task, "main_score"),
                "score": round(100 * score, 2),
            }
        )
    return context


def _trim_section(trim: dict[str, Any] | None) -> str:
    """The trim's own card section (``TrimReport.card_section``), from the run's record."""
    if not trim:
        return ""
    from st_prune.trim.vocab import TrimReport

    return TrimReport(**trim["report"]).card_section().strip()


def _deployment(deployed: dict[str, Any] | None) -> dict[str, Any] | None:
    """Rows for the card's backend table: every exported file, shipped or not (with why), and its speed."""
    if not deployed:
        return None
    rows = []
    for name, entry in deployed["files"].items():
        speed = deployed["speed"].get(name, {})
        rows.append(
            {
                "file": name,
                "precision": entry["precision"],
                "shipped": bool(entry.get("shipped")),
                "load": entry.get("load", ""),
                "reason": entry.get("reason", ""),
                "cosine_min": f"{entry['cosine_to_torch_min']:.4f}",
                "speedup": f"{speed['speedup']:.2f}×" if speed else "–",
            }
        )
    torch_speed = deployed["speed"]["torch"]["texts_per_second"]
    checked = deployed.get("checked_on") or {}
    checked_on = f"{checked['texts']} {checked['source']}" if checked.get("texts") and checked.get("source") else ""
    return {
        "rows": rows,
        "torch_texts_per_second": f"{torch_speed:,.1f}",
        "machine": deployed["machine"],
        "checked_on": checked_on,
    }


def _budget(steps: int, batch_size: int, max_seq_length: int, triplets: int, processes: int = 1) -> str:
    """What the training cost, in the terms runs are compared by (issue 13): steps × batch × tokens per text.

    Under DDP every process trains on its own batch each step: ``processes`` of them multiply what was seen."""
    seen = steps * batch_size * processes
    per_step = f"{batch_size} triplets × {processes} processes" if processes > 1 else f"{batch_size} triplets"
    return (
        f"{steps} steps × {per_step} × at most {max_seq_length} tokens per text: {seen:,} triplets "
        f"seen, {seen / triplets:.2f} passes over the {triplets:,}"
    )


def _precision(train: dict[str, Any]) -> str:
    """The dtype the base weights trained in (``base.dtype``) and whether bf16 mixed precision was on."""
    weights = f"{train['dtype']} weights" if train.get("dtype") else "weights in the checkpoint's dtype"
    return f"{weights}, bf16 mixed precision" if train.get("bf16") else weights


def _local_names(recipe) -> set[str]:
    return {task.name or Path(task.path).stem for task in recipe.evaluation.local_tasks}


def write_card(folder: Path, context: dict[str, Any], curve: Path | None = None) -> Path:
    """Render the card into ``folder/README.md`` (atomically) and copy the L3Prune curve beside it.

    They replace st-prune's own files only (the export's card, an earlier card): a README.md the user wrote or
    edited in the model folder is refused (``st_prune.util.ownership``)."""
    from st_prune.util import ownership

    local = tuple(str(p) for p in {folder.resolve().parent.parent, Path.cwd()} if str(p) not in ("/", ""))
    text = render_card(context, extra_forbidden=local)
    fix = "move it away and run the card stage again"
    if curve is not None and curve.is_file():
        ownership.write_file(
            folder, CURVE_FILE, lambda path: shutil.copyfile(curve, path), by="card", overwrite=True, fix=fix
        )
    ownership.write_text(folder, "README.md", text, by="card", overwrite=True, fix=fix)
    return folder / "README.md"


def _cut_from_embedder(folder: Path) -> bool:
    import json

    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return ((config.get("st_prune") or {}).get("cut_from") or {}).get("kind") == "sentence-transformers"
