"""Vocabulary trimming on real models: parameters and dev scores of small variants at several vocabulary sizes.

SmolLM2-135M-Instruct (5 of 30 layers) and Gemma-3-270M (5 of 18 layers) are cut without training
(`st-prune prune --layers 5`), then trimmed with `st_prune.trim.vocab` on the shared training texts (anchors,
positives, negatives, and the anchors with their instruction prompt, as the encoder sees them) at several
vocabulary sizes. Each trimmed model and the untrimmed cut are scored on the same dev subsets, with the dev
code of bench/bench_training.py (STS-B and SICK Spearman, Debian retrieval nDCG@10, Banking77 accuracy) plus
clustering (Banking77 dev queries by intent, k-means v-measure) and pair classification (SICK entailment vs
contradiction, average precision of cosine), so all five task types are covered. Dev texts are not in the
trimming corpus; a sample of them measures how often tokenization changed.

    nice -n 10 python bench/bench_trim.py [--data ../shared/data] [--bases smollm2 gemma] [--vocab-sizes N ...]
        [--trained smollm2=zoo/models/SmolLM2-135M-Instruct-l3prune-small] [--json out.json]
        [--plot bench/out/trim_curve.png]

``--trained BASE=DIR`` trims a trained variant (e.g. the main job's `small`) instead of the untrained cut.

Targets (issue 12): Gemma small under 60M parameters and SmolLM2 small under 30M, each within 0.5 points of the
untrimmed mean. The curve of mean score against vocabulary size goes to bench/out/trim_curve.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import DevSets, default_prompt, evaluate, read_jsonl  # noqa: E402  (reused, not re-written)
from common import TASK_INSTRUCTIONS, add_data_argument, data_file, gemma_gguf, smollm2_gguf  # noqa: E402

from st_prune import encoder_from_llm, export_model  # noqa: E402
from st_prune.prompt_format import instruction_prompt  # noqa: E402
from st_prune.trim.vocab import trim_vocabulary  # noqa: E402
from st_prune.util.machine import machine_description  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASES = {
    # name: (GGUF resolver, layers kept, total layers, vocabulary sizes to try, parameter target)
    "smollm2": (smollm2_gguf, 5, 30, [4000, 8000, 16000, 20000], 30e6),
    "gemma": (gemma_gguf, 5, 18, [16000, 32000, 48000], 60e6),
}
METRICS = ("stsb", "sick", "debian", "banking77", "clustering", "pairs")


def corpus_texts(train_file: Path) -> list[str]:
    """The training triplets' texts, and the anchors with their instruction prompt (the tokens the encoder sees)."""
    texts = []
    for row in read_jsonl(train_file):
        texts += [row["anchor"], row["positive"], row["negative"]]
        instruction = TASK_INSTRUCTIONS.get(row.get("task", ""))
        if instruction:
            texts.append(instruction_prompt(instruction) + row["anchor"])
    return texts


def held_out_texts(dev_folder: Path, count: int = 1000, seed: int = 1) -> list[str]:
    texts = [row["sentence1"] for row in read_jsonl(dev_folder / "stsb-dev.jsonl")]
    texts += [row["document"] for row in read_jsonl(dev_folder / "debian-dev.jsonl")]
    texts += [row["text"] for row in read_jsonl(dev_folder / "banking77-dev.jsonl")]
    return random.Random(seed).sample(texts, min(count, len(texts)))


class ExtraDev:
    """The two task types bench_training does not score: clustering and pair classification."""

    def __init__(self, folder: Path, clustering_queries: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        banking = read_jsonl(folder / "banking77-dev.jsonl")
        self.clustering = rng.sample(banking, min(clustering_queries, len(banking)))
        self.pairs = [row for row in read_jsonl(folder / "sick-dev.jsonl") if row["label"] != "neutral"]

    def describe(self) -> str:
        return (
            f"clustering {len(self.clustering)} Banking77 dev queries, pair classification {len(self.pairs)} "
            "SICK entailment/contradiction pairs"
        )

    def evaluate(self, model) -> dict[str, float]:
        from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator
        from sklearn.cluster import KMeans
        from sklearn.metrics import v_measure_score

        labels = [row["label"] for row in self.clustering]
        embeddings = model.encode(
            [row["text"] for row in self.clustering],
            batch_size=32,
            prompt=instruction_prompt(TASK_INSTRUCTIONS["banking77"]),
        )
        clusters = KMeans(n_clusters=len(set(labels)), n_init=10, random_state=0).fit_predict(embeddings)
        evaluator = BinaryClassificationEvaluator(
            [row["sentence1"] for row in self.pairs],
            [row["sentence2"] for row in self.pairs],
            [int(row["label"] == "entailment") for row in self.pairs],
            name="sick-pairs",
            batch_size=32,
            similarity_fn_names=["cosine"],
            write_csv=False,
        )
        with default_prompt(model, instruction_prompt(TASK_INSTRUCTIONS["stsb"])):
            pairs = evaluator(model)
        return {"clustering": 100 * v_measure_score(labels, clusters), "pairs": 100 * pairs[evaluator.primary_metric]}


def score(path: Path, dev: DevSets, extra: ExtraDev, cache_dir: Path) -> dict[str, float]:
    """Dev scores of the model at ``path``, kept in ``cache_dir`` (``<name>.scores.json``) for re-runs with the same
    dev subsets: one evaluation takes minutes on a shared 2-core machine."""
    from sentence_transformers import SentenceTransformer

    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / (path.name + ".scores.json")
    key = dev.describe() + "; " + extra.describe()
    if cache.is_file() and json.loads(cache.read_text()).get("dev") == key:
        return json.loads(cache.read_text())["scores"]
    model = SentenceTransformer(str(path), device="cpu")
    scores = {**evaluate(model, dev), **extra.evaluate(model)}
    scores["mean"] = float(np.mean([scores[m] for m in METRICS]))
    cache.write_text(json.dumps({"dev": key, "scores": scores}, indent=2))
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--bases", nargs="+", choices=sorted(BASES), default=["smollm2", "gemma"])
    parser.add_argument(
        "--vocab-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="vocabulary sizes to try for every base (default: a list per base); all corpus tokens is always tried too",
    )
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "bench" / "out" / "trim-work",
        help="cut and trimmed models (reused when re-run)",
    )
    parser.add_argument("--sts-pairs", type=int, default=150)
    parser.add_argument("--retrieval-queries", type=int, default=50)
    parser.add_argument("--distractors", type=int, default=50)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--banking-queries", type=int, default=150)
    parser.add_argument("--clustering-queries", type=int, default=300)
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "out" / "trim_curve.png")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--trained",
        nargs="+",
        default=[],
        metavar="BASE=DIR",
        help="trim this trained model folder of BASE instead of its untrained cut",
    )
    args = parser.parse_args()
    train_file, dev_folder = data_file(args.data, "train", "triplets.jsonl"), data_file(args.data, "dev")

    started = time.perf_counter()
    print(f"machine: {machine_description()}")
    dev = DevSets(
        dev_folder, args.sts_pairs, args.retrieval_queries, args.distractors, args.shots, args.banking_queries
    )
    extra = ExtraDev(dev_folder, args.clustering_queries)
    print(f"dev subsets: {dev.describe()}; {extra.describe()}")
    texts, held_out = corpus_texts(train_file), held_out_texts(dev_folder)
    print(f"trimming corpus: {len(texts):,} texts from {train_file}; held-out: {len(held_out)} dev texts")

    trained = dict(item.split("=", 1) for item in args.trained)
    results = {}
    for base in args.bases:
        resolve, layers, total, sizes, target = BASES[base]
        work = args.work / (f"{base}-trained" if base in trained else base)
        untrimmed = Path(trained[base]) if base in trained else work / "untrimmed"
        if base in trained:
            layers = json.loads((untrimmed / "config.json").read_text())["num_hidden_layers"]
        elif not (untrimmed / "modules.json").is_file():
            model = encoder_from_llm(resolve(), layers=layers, max_seq_length=args.max_seq_length)
            export_model(model, untrimmed, overwrite=True)
            del model
        rows = [{"vocab": "untrimmed", "scores": score(untrimmed, dev, extra, work)}]
        print(f"{base} untrimmed ({layers}/{total} layers): {fmt(rows[0]['scores'])}", flush=True)
        for size in [*(args.vocab_sizes or sizes), None]:
            out = work / (f"v{size}" if size else "all")
            if not (out / "trim.json").is_file():
                trim_vocabulary(untrimmed, texts, out, vocab_size=size, held_out=held_out)
            report = json.loads((out / "trim.json").read_text())
            rows.append(
                {"vocab": size or "all corpus tokens", "report": report, "scores": score(out, dev, extra, work)}
            )
            print(
                f"{base} {rows[-1]['vocab']}: {report['vocab_after']:,} tokens, "
                f"{report['parameters_after'] / 1e6:.1f}M params; {fmt(rows[-1]['scores'])}",
                flush=True,
            )
        rows[0]["report"] = {
            "parameters_after": rows[1]["report"]["parameters_before"],
            "disk_bytes_after": rows[1]["report"]["disk_bytes_before"],
            "vocab_after": rows[1]["report"]["vocab_before"],
        }
        results[base] = {
            "layers": layers,
            "total_layers": total,
            "target_parameters": target,
            "rows": rows,
            "model": f"trained: {untrimmed.name}" if base in trained else "untrained cut",
        }

    print_table(results)
    plot(results, args.plot)
    elapsed = time.perf_counter() - started
    print(f"\ncurve: {args.plot}\nbench time: {elapsed / 60:.1f} min")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": {k: str(v) for k, v in vars(args).items()},
                    "dev": dev.describe() + "; " + extra.describe(),
                    "results": results,
                    "minutes": elapsed / 60,
                },
                indent=2,
            )
        )
    return 0


def fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in scores.items())


def print_table(results: dict) -> None:
    header = (
        "base",
        "vocabulary",
        "tokens",
        "params",
        "on disk",
        "held-out tokenization changed",
        "STS-B",
        "SICK",
        "Debian",
        "Banking77",
        "clustering",
        "pairs",
        "mean",
        "Δ mean",
        "target met",
    )
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for base, result in results.items():
        reference = result["rows"][0]["scores"]["mean"]
        for row in result["rows"]:
            report, scores = row["report"], row["scores"]
            changed = report.get("held_out_changed_share")
            delta = scores["mean"] - reference
            met = (
                "-"
                if row["vocab"] == "untrimmed"
                else "yes"
                if report["parameters_after"] < result["target_parameters"] and delta >= -0.5
                else "no"
            )
            print(
                f"| {base} {result['layers']}/{result['total_layers']} | {row['vocab']} | {report['vocab_after']:,} | "
                f"{report['parameters_after'] / 1e6:.1f}M | {report['disk_bytes_after'] / 1e6:.0f} MB | "
                f"{'-' if changed is None else f'{100 * changed:.1f} %'} | "
                + " | ".join(f"{scores[m]:.2f}" for m in METRICS)
                + f" | {scores['mean']:.2f} | {delta:+.2f} | {met} |"
            )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for axis, (base, result) in zip(axes[0], results.items()):
        rows = result["rows"]
        trimmed = sorted(rows[1:], key=lambda row: row["report"]["vocab_after"])
        axis.plot(
            [row["report"]["vocab_after"] for row in trimmed],
            [row["scores"]["mean"] for row in trimmed],
            "o-",
            label="trimmed",
        )
        axis.axhline(
            rows[0]["scores"]["mean"],
            linestyle="--",
            color="grey",
            label=f"untrimmed ({rows[0]['report']['vocab_after']:,} tokens)",
        )
        axis.axhline(rows[0]["scores"]["mean"] - 0.5, linestyle=":", color="red", label="untrimmed − 0.5")
        for row in trimmed:
            axis.annotate(
                f"{row['report']['parameters_after'] / 1e6:.0f}M",
                (row["report"]["vocab_after"], row["scores"]["mean"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        axis.set_xscale("log")
        axis.set_xlabel("vocabulary size (tokens; labels: parameters)")
        axis.set_ylabel("mean dev score")
        axis.set_title(f"{base}, {result['layers']} of {result['total_layers']} layers, {result['model']}", fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
