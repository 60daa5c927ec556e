"""`st_prune.hub.publish.publish_folder` and `st-prune publish`, run with the real huggingface_hub client against
the in-process fake Hub of `hub_server.py` (no network: any non-loopback connection fails the test)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import hashlib
import json
import logging
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hub_server import FakeHub
from hub_tokens import REPO, WRITE_TOKEN

from st_prune import cli
from st_prune.errors import StPruneError
from st_prune.hub.publish import PublishError, publish_folder

READ_TOKEN = "hf_ReadOnlyTokenThatMustNeverLeak0123456789"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8  # binary: takes the LFS path


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(autouse=True)
def offline_except_loopback(monkeypatch):
    """Fail any connection that is not to 127.0.0.1, so nothing can reach huggingface.co."""
    connect = socket.socket.connect

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(autouse=True)
def clean_hf_env(monkeypatch, tmp_path):
    """No token, endpoint or login from the developer's machine leaks in."""
    import huggingface_hub.constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))


@pytest.fixture
def hub():
    with FakeHub(tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"}) as fake_hub:
        yield fake_hub


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> Path:
    """A tiny SentenceTransformer (random 2-layer BERT, WordLevel tokenizer, mean pooling) plus a PNG plot."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tiny")
    words = "the a cat dog sat on mat hello world model encoder text".split()
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(root / "bert")
    fast.save_pretrained(root / "bert")
    transformer = Transformer(str(root / "bert"))
    model = SentenceTransformer(modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")])
    model.save(str(root / "model"))
    (root / "model" / "plots").mkdir()
    (root / "model" / "plots" / "loss.png").write_bytes(PNG_BYTES)
    return root / "model"


@pytest.fixture
def model_dir(saved_model, tmp_path) -> Path:
    """A fresh copy of the saved model that a test may edit."""
    return Path(shutil.copytree(saved_model, tmp_path / "model"))


def local_files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def publish(folder: Path, hub: FakeHub, **kwargs):
    return publish_folder(folder, REPO, token=WRITE_TOKEN, endpoint=hub.endpoint, **kwargs)


def run_cli(argv: list[str], monkeypatch) -> int:
    """`st_prune.cli.main` with only the publish command registered (other commands are tested elsewhere)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("st_prune.commands.publish",))
    return cli.main(argv)


# ---------------------------------------------------------------------------------------- publishing
def test_publish_creates_repo_with_every_file_and_matching_hashes(hub, model_dir):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    result = publish(model_dir, hub)

    local = local_files(model_dir)
    assert {"modules.json", "model.safetensors", "tokenizer.json", "README.md", "1_Pooling/config.json"} <= set(local)
    assert result.changed and set(result.uploaded) == set(local) and result.deleted == ()
    assert result.commit_oid == hub.head(REPO)
    assert result.commit_url == f"{hub.endpoint}/{REPO}/commit/{result.commit_oid}"
    assert len(hub.commits(REPO)) == 2  # the Hub's initial .gitattributes commit + one publish commit
    assert hub.files(REPO) == {**local, ".gitattributes": hub.files(REPO)[".gitattributes"]}

    # Weights and plots went through the LFS batch API + upload; text files were committed inline.
    stored = hub.stored(REPO)
    assert stored["model.safetensors"].is_lfs and stored["plots/loss.png"].is_lfs
    assert not stored["tokenizer.json"].is_lfs and not stored["modules.json"].is_lfs
    assert len(hub.requests_to("/__fake_lfs__/upload/", "PUT")) == 2

    # The hashes the Hub reports are those of the local bytes (sha256 for LFS, git blob sha1 otherwise).
    tree = HfApi(endpoint=hub.endpoint).list_repo_tree(REPO, recursive=True)
    for entry in (entry for entry in tree if isinstance(entry, RepoFile) and entry.path in local):
        data = local[entry.path]
        if entry.lfs is not None:
            assert entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
        else:
            assert entry.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_publish_never_uploads_a_staging_folder_or_st_prunes_record(hub, model_dir):
    """Issue 23 case 7: a killed deploy's staging folder (an older one's inside the folder, 391 MB seen) and
    st-prune's record of what it wrote are not part of the model."""
    from st_prune.util import ownership

    model = local_files(model_dir)
    for staging in (".deploy-staging-ab12cd34", ".onnx.st-prune-staging-x1y2z3"):
        (model_dir / staging / "onnx").mkdir(parents=True)
        (model_dir / staging / "onnx" / "model.onnx").write_bytes(b"half an export")
    ownership.record(model_dir, ["modules.json"], by="export")
    result = publish(model_dir, hub)
    assert set(result.uploaded) == set(model)
    assert hub.files(REPO) == {**model, ".gitattributes": hub.files(REPO)[".gitattributes"]}


def test_republishing_identical_files_makes_no_commit(hub, model_dir):
    first = publish(model_dir, hub)
    writes_before = len(hub.requests_to("/commit/")) + len(hub.requests_to("/preupload/"))

    second = publish(model_dir, hub)

    assert not second.changed and second.uploaded == () and second.deleted == ()
    assert second.commit_oid == first.commit_oid == hub.head(REPO)
    assert len(hub.commits(REPO)) == 2
    assert len(hub.requests_to("/commit/")) + len(hub.requests_to("/preupload/")) == writes_before


def test_changes_make_one_commit_with_only_changed_files_and_deletions(hub, model_dir):
    publish(model_dir, hub)
    lfs_uploads = len(hub.requests_to("/__fake_lfs__/upload/", "PUT"))
    (model_dir / "README.md").write_text("---\nlibrary_name: sentence-transformers\n---\n# Tiny, v2\n")
    (model_dir / "results.json").write_text('{"mteb": 0.5}')
    (model_dir / "plots" / "loss.png").unlink()

    result = publish(model_dir, hub)

    assert result.changed
    assert sorted(result.uploaded) == ["README.md", "results.json"] and result.deleted == ("plots/loss.png",)
    assert len(hub.commits(REPO)) == 3
    remote = hub.files(REPO)
    assert remote["README.md"].endswith(b"# Tiny, v2\n") and "plots/loss.png" not in remote
    assert ".gitattributes" in remote  # Hub-managed, kept although the folder has none
    assert set(remote) - {".gitattributes"} == set(local_files(model_dir))
    assert len(hub.requests_to("/__fake_lfs__/upload/", "PUT")) == lfs_uploads  # unchanged weights not re-sent


def test_commit_failure_leaves_the_repo_unchanged_and_a_rerun_succeeds(hub, model_dir):
    publish(model_dir, hub)
    before_head, before_files = hub.head(REPO), hub.files(REPO)
    (model_dir / "README.md").write_text("# changed\n")
    (model_dir / "1_Pooling" / "config.json").unlink()
    shutil.rmtree(model_dir / "1_Pooling")
    modules = json.loads((model_dir / "modules.json").read_text())[:1]
    (model_dir / "modules.json").write_text(json.dumps(modules))
    hub.fail_next("commit", status=500)

    with pytest.raises(PublishError) as failure:
        publish(model_dir, hub)

    message = str(failure.value)
    assert "\n" not in message
    assert "500" in message and "nothing was committed" in message and "re-run `st-prune publish`" in message
    assert hub.head(REPO) == before_head and hub.files(REPO) == before_files

    result = publish(model_dir, hub)
    assert result.changed and hub.head(REPO) == result.commit_oid
    assert set(hub.files(REPO)) - {".gitattributes"} == set(local_files(model_dir))


def test_failed_first_publish_leaves_only_the_empty_repo(hub, model_dir):
    hub.fail_next("commit", status=500)
    with pytest.raises(PublishError, match="nothing was committed"):
        publish(model_dir, hub)
    assert set(hub.files(REPO)) == {".gitattributes"} and len(hub.commits(REPO)) == 1

    publish(model_dir, hub)
    assert set(hub.files(REPO)) - {".gitattributes"} == set(local_files(model_dir))


def test_lfs_upload_failure_leaves_the_repo_unchanged_and_a_rerun_succeeds(hub, model_dir, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    publish(model_dir, hub)
    before_head, before_files = hub.head(REPO), hub.files(REPO)
    with open(model_dir / "model.safetensors", "r+b") as weights:  # change one byte of the last tensor
        weights.seek(-1, os.SEEK_END)
        last = weights.read(1)
        weights.seek(-1, os.SEEK_END)
        weights.write(bytes([last[0] ^ 0xFF]))
    (model_dir / "README.md").write_text("# retrained\n")
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))  # skip retry backoff
    hub.fail_next("lfs_upload", status=500, times=6)  # the client's first try + its 5 retries

    with pytest.raises(PublishError) as failure:
        publish(model_dir, hub)

    message = str(failure.value)
    assert "model.safetensors" in message and "500" in message and "nothing was committed" in message
    assert "\n" not in message
    assert hub.head(REPO) == before_head and hub.files(REPO) == before_files  # README not committed alone

    publish(model_dir, hub)
    assert hub.files(REPO)["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert len(hub.commits(REPO)) == 3


def test_a_transient_lfs_500_is_retried_by_the_client(hub, model_dir, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda seconds: None))
    hub.fail_next("lfs_upload", status=500, times=1)
    result = publish(model_dir, hub)
    assert result.changed and hub.files(REPO)["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


def test_upload_that_does_not_match_after_commit_is_reported(hub, model_dir):
    hub.tamper_next_commit(lambda files: files.pop("tokenizer.json"))
    with pytest.raises(PublishError, match=r"does not match the local folder after upload \(missing: tokenizer.json\)"):
        publish(model_dir, hub)


def test_a_concurrent_push_is_not_overwritten(hub, model_dir, monkeypatch):
    """The commit names the head it was planned against; someone else's push in between makes it fail."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from st_prune.hub import publish as hub_module

    publish(model_dir, hub)
    (model_dir / "README.md").write_text("# mine\n")
    read_snapshot = hub_module.ensure_repo_snapshot

    def snapshot_then_someone_else_pushes(*args, **kwargs):
        snapshot = read_snapshot(*args, **kwargs)
        HfApi(endpoint=hub.endpoint, token=WRITE_TOKEN).create_commit(
            REPO, [CommitOperationAdd("NOTES.md", b"theirs")], commit_message="Someone else"
        )
        return snapshot

    monkeypatch.setattr(hub_module, "ensure_repo_snapshot", snapshot_then_someone_else_pushes)
    with pytest.raises(PublishError, match=r"changed on the Hub while publishing \(HTTP 412\): re-run"):
        publish(model_dir, hub)
    assert hub.commits(REPO)[0].title == "Someone else" and hub.files(REPO)["NOTES.md"] == b"theirs"


def test_cache_folders_are_not_published(hub, model_dir):
    (model_dir / ".cache" / "huggingface").mkdir(parents=True)
    (model_dir / ".cache" / "huggingface" / "model.safetensors.metadata").write_text("etag")
    (model_dir / "__pycache__").mkdir()
    (model_dir / "__pycache__" / "x.pyc").write_bytes(b"\0")
    publish(model_dir, hub)
    assert not [path for path in hub.files(REPO) if path.startswith((".cache/", "__pycache__/"))]
    assert "modules.json" in hub.files(REPO)


def test_create_pr_opens_a_pull_request_and_leaves_main_alone(hub, model_dir):
    from huggingface_hub import HfApi

    publish(model_dir, hub)
    main_head = hub.head(REPO)
    (model_dir / "README.md").write_text("# proposed card\n")

    result = publish(model_dir, hub, create_pr=True)

    assert result.changed and result.pr_url == f"{hub.endpoint}/{REPO}/discussions/1"
    assert hub.head(REPO) == main_head
    refs = HfApi(endpoint=hub.endpoint).list_repo_refs(REPO, include_pull_requests=True)
    assert [(ref.ref, ref.target_commit) for ref in refs.pull_requests] == [("refs/pr/1", result.commit_oid)]
    assert hub.files(REPO, "refs/pr/1")["README.md"] == b"# proposed card\n"
    assert hub.commits(REPO, "refs/pr/1")[1].oid == main_head


def test_private_repo_is_created_private_and_a_public_one_is_not_reused_as_private(hub, model_dir):
    publish_folder(model_dir, "st-prune-test/private-one", private=True, token=WRITE_TOKEN, endpoint=hub.endpoint)
    assert hub.repo("st-prune-test/private-one").private is True

    publish(model_dir, hub)
    with pytest.raises(StPruneError, match="already exists and is public"):
        publish(model_dir, hub, private=True)


# --------------------------------------------------------------------------------- auth and tokens
def assert_token_nowhere(token: str, *texts: str) -> None:
    for text in texts:
        assert token not in text


def test_read_only_token_gets_a_one_line_403_without_the_token(hub, model_dir, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PublishError) as failure:
        publish_folder(model_dir, REPO, token=READ_TOKEN, endpoint=hub.endpoint)

    message = str(failure.value)
    assert message == (
        f"no write access to {REPO} (HTTP 403): log in with `hf auth login` or set HF_TOKEN with a write token"
    )
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    captured = capsys.readouterr()
    assert_token_nowhere(READ_TOKEN, message, caplog.text, captured.out, captured.err)
    assert REPO not in hub.repos


def test_read_only_token_on_an_existing_repo_changes_nothing(hub, model_dir, monkeypatch):
    publish(model_dir, hub)
    head = hub.head(REPO)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)  # huggingface_hub's own token resolution
    assert not publish_folder(model_dir, REPO, endpoint=hub.endpoint).changed  # nothing to write: fine
    (model_dir / "README.md").write_text("# edit\n")

    with pytest.raises(PublishError, match=r"^no write access to .* \(HTTP 403\)") as failure:
        publish_folder(model_dir, REPO, endpoint=hub.endpoint)
    assert READ_TOKEN not in str(failure.value) and hub.head(REPO) == head


def test_unknown_token_gets_a_one_line_401(hub, model_dir):
    bogus = "hf_BogusTokenNobodyKnows0123456789"
    with pytest.raises(PublishError, match=r"the Hub rejected the token \(HTTP 401\)") as failure:
        publish_folder(model_dir, REPO, token=bogus, endpoint=hub.endpoint)
    assert bogus not in str(failure.value) and "\n" not in str(failure.value)


def test_missing_token_is_refused_before_any_request(hub, model_dir):
    with pytest.raises(StPruneError, match="no Hugging Face token found: log in with `hf auth login`"):
        publish_folder(model_dir, REPO, endpoint=hub.endpoint)
    assert hub.requests == []


def test_token_from_hf_token_env_is_used(hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert publish_folder(model_dir, REPO).changed
    assert all(request.authorized for request in hub.requests if not request.path.startswith("/__fake_lfs__/upload"))


# ----------------------------------------------------------------------- input refused before network
def test_folders_that_are_not_models_are_refused_before_any_request(hub, tmp_path, model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_modules = tmp_path / "no-modules"
    no_modules.mkdir()
    (no_modules / "model.safetensors").write_bytes(b"\0" * 16)
    broken = model_dir
    shutil.rmtree(broken / "1_Pooling")

    cases = [
        (tmp_path / "does-not-exist", "is not a folder"),
        (empty, r"not a sentence-transformers model folder \(no modules\.json\)"),
        (no_modules, r"not a sentence-transformers model folder \(no modules\.json\)"),
        (broken, "module folder '1_Pooling' listed in .* is missing"),
    ]
    for folder, expected in cases:
        with pytest.raises(StPruneError, match=expected):
            publish(folder, hub)
    assert hub.requests == []


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "org/bad--name", "org/", "/name", "org/has space"])
def test_invalid_repo_ids_are_refused_before_any_request(hub, model_dir, repo_id):
    with pytest.raises(StPruneError, match="invalid --repo-id"):
        publish_folder(model_dir, repo_id, token=WRITE_TOKEN, endpoint=hub.endpoint)
    assert hub.requests == []


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_publishes_then_reports_nothing_to_publish(hub, model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)

    assert run_cli(["publish", str(model_dir), "--repo-id", REPO, "-m", "First release"], monkeypatch) == 0
    out = capsys.readouterr().out
    assert f"Commit: {hub.endpoint}/{REPO}/commit/{hub.head(REPO)}" in out
    assert hub.commits(REPO)[0].title == "First release"

    assert run_cli(["publish", str(model_dir), "--repo-id", REPO], monkeypatch) == 0
    assert "Nothing to publish" in capsys.readouterr().out and len(hub.commits(REPO)) == 2


def test_cli_create_pr_prints_the_pull_request_url(hub, model_dir, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert run_cli(["publish", str(model_dir), "--repo-id", REPO, "--create-pr"], monkeypatch) == 0
    assert f"Opened pull request on {REPO}: {hub.endpoint}/{REPO}/discussions/1" in capsys.readouterr().out
    assert set(hub.files(REPO)) == {".gitattributes"}  # main untouched


def test_cli_errors_exit_2_with_one_line(hub, model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    assert run_cli(["publish", str(model_dir), "--repo-id", REPO], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "st-prune publish: error: no write access to" in err
    assert READ_TOKEN not in err

    assert run_cli(["publish", str(tmp_path), "--repo-id", REPO], monkeypatch) == 2
    assert "no modules.json" in capsys.readouterr().err

    monkeypatch.delenv("HF_TOKEN")
    assert run_cli(["publish", str(model_dir), "--repo-id", REPO], monkeypatch) == 2
    assert "no Hugging Face token found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- round trip
def test_published_model_downloads_and_gives_the_same_embeddings(hub, model_dir, tmp_path):
    from huggingface_hub import snapshot_download
    from sentence_transformers import SentenceTransformer

    publish(model_dir, hub)
    downloaded = snapshot_download(REPO, endpoint=hub.endpoint, cache_dir=tmp_path / "hf-cache")

    assert local_files(Path(downloaded)).keys() - {".gitattributes"} == local_files(model_dir).keys()
    sentences = ["the cat sat on the mat", "hello world", "a dog"]
    expected = SentenceTransformer(str(model_dir), device="cpu").encode(sentences)
    actual = SentenceTransformer(downloaded, device="cpu").encode(sentences)
    assert expected.shape == (3, 32)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
