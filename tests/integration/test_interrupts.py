"""Ctrl-C on every verb (issue 23, case 6): exit 130 and one line naming what is kept and the command that goes on,
never a traceback; SIGTERM stops a command the same way (exit 143)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from st_prune import cli


def stop(*args, **kwargs):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """``cli.main``; an interrupt escaping it fails the test (as a traceback would show), not the whole session."""
    try:
        return cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped st-prune as a traceback")


@pytest.fixture()
def triplets(tmp_path) -> Path:
    path = tmp_path / "triplets.jsonl"
    words = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field"]
    path.write_text(
        "".join(
            json.dumps(
                {"anchor": f"the {word} {i}", "positive": f"a {word} {i}", "negative": f"no {words[(i + 3) % 8]} {i}"}
            )
            + "\n"
            for i, word in enumerate(words)
        )
    )
    return path


def verb_cases(tmp_path: Path, model: Path, triplets: Path) -> dict[str, tuple[list[str], str, str]]:
    """verb -> (argv, the function its work goes through, the expected line after `st-prune VERB: interrupted; `)."""
    out = tmp_path / "out"

    def line(argv: list[str], kept: str, action: str = "continue with") -> str:
        return f"{kept}; {action} `{shlex.join(['st-prune', *argv])}`"

    cases = {
        "prune": (
            ["prune", str(model), "--layers", "1", "--output", str(out)],
            "st_prune.model.truncated_llm.encoder_from_llm",
            f"nothing was written to {out}",
            "start again with",
        ),
        "scan": (
            ["scan", str(model), "--data", str(triplets), "--batch-size", "4", "--output", str(out / "scan.json")],
            "st_prune.model.truncated_llm.encoder_from_llm",
            f"nothing was written (the scan writes {out / 'scan.json'} when it ends)",
            "start again with",
        ),
        "train": (
            ["train", str(model), "--data", str(triplets), "--layers", "1", "--batch-size", "4", "--output", str(out)],
            "st_prune.model.truncated_llm.encoder_from_llm",
            "no checkpoint was saved yet (one every 100 steps, --save-steps)",
            "start again with",
        ),
        "eval": (
            ["eval", str(model), "--tasks", "STSBenchmark", "--output", str(out)],
            "st_prune.evaluation.tasks.resolve_tasks",
            f"the results of the finished tasks are kept in {out}, and the same command skips them",
        ),
        "trim": (
            ["trim", str(model), "--corpus", str(triplets), "--output", str(out)],
            "st_prune.trim.vocab.read_corpus",
            f"nothing was written to {out}",
            "start again with",
        ),
        "deploy": (
            ["deploy", str(model), "--onnx"],
            "st_prune.deploy.deploy.deploy",
            f"{model} is as it was",
            "start again with",
        ),
        "run": (
            ["run", "smollm2-135m-instruct-cpu", "--output", str(out)],
            "st_prune.pipeline.runner.RecipeRunner.run",
            f"the finished stages are kept in {out} and the same command skips them (a stopped training goes on "
            "from its last checkpoint)",
        ),
        "run-default-folder": (
            ["run", "smollm2-135m-instruct-cpu"],
            "st_prune.pipeline.runner.RecipeRunner.run",
            "the finished stages are kept in runs/smollm2-135m-instruct-cpu and the same command "
            "skips them (a stopped training goes on from its last checkpoint)",
        ),
        "submit": (
            ["submit", str(tmp_path / "results"), "--output", str(out)],
            "st_prune.evaluation.submission.prepare_submission",
            f"{out} may hold part of the submission, which the same command writes again",
            "start again with",
        ),
        "publish": (
            ["publish", str(model), "--repo-id", "me/tiny"],
            "st_prune.hub.publish.publish_folder",
            "me/tiny holds either the whole commit or none of it",
        ),
        "recipes": (["recipes"], "st_prune.commands.recipes.recipe_lines", "nothing was written", "start again with"),
    }
    return {name: (argv, target, line(argv, *expected)) for name, (argv, target, *expected) in cases.items()}


@pytest.mark.parametrize(
    "case",
    ["prune", "scan", "train", "eval", "trim", "deploy", "run", "run-default-folder", "submit", "publish", "recipes"],
)
def test_ctrl_c_on_every_verb_is_one_line_naming_what_is_kept_and_how_to_go_on(
    case, tiny_llm, triplets, tmp_path, capsys, monkeypatch
):
    argv, target, expected = verb_cases(tmp_path, tiny_llm(), triplets)[case]
    monkeypatch.chdir(tmp_path)  # `run` without --output names runs/<recipe> in the working folder
    monkeypatch.setattr(target, stop)  # Ctrl-C in the middle of the verb's work
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 130, err
    assert err == f"st-prune {argv[0]}: interrupted; {expected}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, continued",
    [
        ([], ["--resume"]),
        (["--overwrite"], ["--resume"]),  # --overwrite beside --resume is refused, and would start over
        (["--resume"], ["--resume"]),
        (["--resume", "out.work/checkpoint-2"], ["--resume"]),  # an older checkpoint than the newest
        (["--resume=out.work/checkpoint-2"], ["--resume"]),
    ],
    ids=["plain", "overwrite", "resume", "resume-checkpoint", "resume=checkpoint"],
)
def test_train_after_a_checkpoint_continues_with_a_bare_resume(extra, continued, monkeypatch):
    import st_prune.training.trainer

    monkeypatch.setattr(st_prune.training.trainer, "last_intact_checkpoint", lambda work: f"{work}/checkpoint-4")
    argv = ["train", "m", "--data", "d.jsonl", "--layers", "2", *extra, "--output", "out", "--max-steps", "9"]
    args = cli.build_parser().parse_args(argv)
    resume = args.interrupted(args, argv)
    assert resume.kept == "the last checkpoint is out.work/checkpoint-4"
    assert resume.argv == [
        "train",
        "m",
        "--data",
        "d.jsonl",
        "--layers",
        "2",
        "--output",
        "out",
        "--max-steps",
        "9",
        *continued,
    ]


def test_the_torchrun_ranks_other_than_0_stop_quietly(tiny_llm, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr("st_prune.model.truncated_llm.encoder_from_llm", stop)
    assert main(["prune", str(tiny_llm()), "--layers", "1", "--output", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == ""  # rank 0 speaks for the run
