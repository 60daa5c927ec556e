"""Nothing local reaches the Hub: building, exporting and reloading a model made from a local folder sends no
request naming local folders (sentence-transformers' card code would look ``parent/folder`` up as a repo id)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml
from hub_server import FakeHub  # noqa: E402

from st_prune import TruncatedLLM, encoder_from_llm, export_model  # noqa: E402
from st_prune.errors import StPruneError  # noqa: E402
from st_prune.util.local_only import load_model_folder  # noqa: E402

TOKEN = "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0123"
LOCAL_NAMES = ("my-projects", "secret-llama", "exports")


@pytest.fixture
def hub(monkeypatch):
    """A fake Hub that receives every request the library clients make, even those with no endpoint given."""
    import huggingface_hub.constants
    import huggingface_hub.hf_api

    attempts: list[object] = []
    connect = socket.socket.connect

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)  # recorded, since callers swallow the error
            raise OSError(f"test blocked a connection to {address!r}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    with FakeHub(tokens={TOKEN: "write"}) as fake_hub:
        # `huggingface_hub.model_info` is a method of a client built at import: point it here too.
        monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", fake_hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake_hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        fake_hub.blocked = attempts
        yield fake_hub


def _local_requests(hub: FakeHub) -> list[str]:
    return [f"{r.method} {r.path}" for r in hub.requests if any(name in r.path for name in LOCAL_NAMES)]


def test_exporting_and_reloading_a_local_model_sends_no_local_name_to_the_hub(tiny_llm, tmp_path, monkeypatch, hub):
    local = Path(shutil.copytree(tiny_llm("llama", layers=2), tmp_path / "my-projects" / "secret-llama"))
    monkeypatch.chdir(tmp_path)

    export_model(encoder_from_llm(str(local), layers=1), Path("exports") / "encoder")
    # A model composed by hand (README's second example) is covered by export_model itself.
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    llm = TruncatedLLM(str(local), layers=1)
    composed = SentenceTransformer(modules=[llm, Pooling(llm.get_embedding_dimension(), "mean", include_prompt=False)])
    export_model(composed, Path("exports") / "composed")
    # Cards, evaluation and `st-prune eval` reload exports by their (here relative, `parent/folder`) path.
    reloaded = load_model_folder(Path("exports") / "encoder")

    assert _local_requests(hub) == []
    assert hub.blocked == []
    assert reloaded.model_card_data.base_model is None  # not some public repo that happens to share the name


def test_publishing_a_recipe_on_a_local_base_needs_its_hub_id(tiny_llm, tmp_path, hub):
    from st_prune.pipeline.recipe import load_recipe
    from st_prune.pipeline.runner import RecipeRunner

    (tmp_path / "triplets.jsonl").write_text('{"anchor": "a cat", "positive": "the cat", "negative": "a dog"}\n')
    recipe = {
        "name": "local-base",
        "base": {"model": str(tiny_llm("llama", layers=2))},
        "variants": [{"name": "small", "pick": "small"}, {"name": "large", "pick": "large"}],
        "data": {"path": "triplets.jsonl"},
        "card": {"license": "apache-2.0", "language": ["en"]},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    runner = RecipeRunner(load_recipe(path), tmp_path / "run", push_to_hub="my-org", log=lambda _: None)
    with pytest.raises(StPruneError, match=r"base.id is not set.*--set base.id=ORG/NAME"):
        runner.preflight()
    assert hub.requests == []
    assert not (tmp_path / "run").exists()
