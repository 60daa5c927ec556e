"""`st-prune trim`: exact vocabulary trimming for byte-level BPE and BPE with byte fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from plain_st import encode_in_plain_process
from sentence_transformers import SentenceTransformer
from tiny_models import CORPUS
from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from vocab_trim import OTHER_TEXTS, TRIM_CORPUS, encoder_folder, tokens

from st_prune import StPruneError, encoder_from_llm
from st_prune.cli import main as cli_main
from st_prune.trim.vocab import REPORT_FILE, read_corpus, trim_vocabulary


def byte_fallback_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE like Gemma's: spaces as ▁, no pre-tokenizer, <0xNN> byte tokens, byte fallback,
    BOS prepended, and a special <end_of_turn> at the *last* id (so renumbering it is visible)."""
    trainer = trainers.BpeTrainer(
        vocab_size=220, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"], show_progress=False
    )
    learner = Tokenizer(models.BPE(unk_token="<unk>"))
    learner.normalizer = normalizers.Replace(" ", "▁")
    learner.train_from_iterator(CORPUS, trainer=trainer)
    learned = json.loads(learner.to_str())["model"]
    vocab = {token: index for index, token in enumerate(["<pad>", "<eos>", "<bos>", "<unk>"])}
    vocab.update({f"<0x{byte:02X}>": len(vocab) + byte for byte in range(256)})
    for token, _ in sorted(learned["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=[tuple(m) for m in learned["merges"]], unk_token="<unk>", byte_fallback=True)
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(["<pad>", "<eos>", "<bos>", "<unk>", "<end_of_turn>"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<end_of_turn>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=128,
    )


@pytest.fixture(scope="module")
def encoders(tmp_path_factory, tiny_llm):
    """{"byte-level": folder, "byte-fallback": folder}: a Llama with the tiny byte-level BPE (weighted mean) and
    a Gemma 3 with a byte-fallback BPE (last-token pooling: EOS appended by the post-processor)."""
    root = tmp_path_factory.mktemp("trim-encoders")
    shutil.copytree(tiny_llm("llama", layers=4), root / "llama-source")
    return {
        "byte-level": encoder_folder(root, "llama", None, "weighted_mean"),
        "byte-fallback": encoder_folder(root, "gemma3_text", byte_fallback_tokenizer(), "last_token"),
    }


@pytest.mark.parametrize("family", ["byte-level", "byte-fallback"])
def test_texts_of_kept_tokens_tokenize_and_embed_exactly(encoders, family, tmp_path):
    source = encoders[family]
    report = trim_vocabulary(source, TRIM_CORPUS, tmp_path / "trimmed", held_out=OTHER_TEXTS)
    trimmed = tmp_path / "trimmed"
    # Tokens only the other sentences use are gone (the tiny vocabulary is mostly its 256-byte alphabet).
    assert report.vocab_after < report.vocab_before and report.kept_closure_only + report.kept_corpus < 150
    only_other = {t for text in tokens(source, OTHER_TEXTS[:1]) for t in text} - {
        t for text in tokens(source, TRIM_CORPUS) for t in text
    }
    assert only_other - set(Tokenizer.from_file(str(trimmed / "tokenizer.json")).get_vocab())
    assert tokens(trimmed, TRIM_CORPUS) == tokens(source, TRIM_CORPUS)  # specials (BOS/EOS) included
    before = SentenceTransformer(str(source)).encode(TRIM_CORPUS, convert_to_numpy=True)
    after = SentenceTransformer(str(trimmed)).encode(TRIM_CORPUS, convert_to_numpy=True)
    np.testing.assert_allclose(after, before, atol=1e-5)
    # The embedding matrix and config shrank with the tokenizer, consistently.
    config = json.loads((trimmed / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(trimmed / "tokenizer.json"))
    assert config["vocab_size"] == tokenizer.get_vocab_size(with_added_tokens=True) == report.vocab_after
    assert SentenceTransformer(str(trimmed))[0].auto_model.get_input_embeddings().weight.shape[0] == report.vocab_after
    # Token ids in config.json name the same tokens as before.
    original_config = json.loads((source / "config.json").read_text())
    original_tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    id_keys = [key for key in ("bos_token_id", "eos_token_id", "pad_token_id") if original_config.get(key) is not None]
    assert id_keys[:2] == ["bos_token_id", "eos_token_id"]
    for key in id_keys:
        assert tokenizer.id_to_token(config[key]) == original_tokenizer.id_to_token(original_config[key])


@pytest.mark.parametrize("family", ["byte-level", "byte-fallback"])
def test_other_texts_get_smaller_pieces_never_wrong_ids(encoders, family, tmp_path):
    source = encoders[family]
    report = trim_vocabulary(source, TRIM_CORPUS, tmp_path / "trimmed", held_out=OTHER_TEXTS)
    original = Tokenizer.from_file(str(source / "tokenizer.json"))
    trimmed = Tokenizer.from_file(str(tmp_path / "trimmed" / "tokenizer.json"))
    for text in OTHER_TEXTS:
        before, after = original.encode(text), trimmed.encode(text)
        assert "<unk>" not in after.tokens
        assert max(after.ids) < report.vocab_after
        # Every id names the token it claims, and the pieces spell the same text.
        assert [trimmed.id_to_token(i) for i in after.ids] == after.tokens
        assert trimmed.decode(after.ids) == original.decode(before.ids)
        if family == "byte-level":
            assert "".join(after.tokens) == "".join(before.tokens)
    # Byte fallback: ASCII letters of the vocabulary stay characters, never their byte tokens (S is unused).
    assert not [t for t in trimmed.encode("Sentence").tokens if t.startswith("<0x")]
    assert 0 < report.held_out_changed_share <= 1  # these texts use words the corpus did not
    embeddings = SentenceTransformer(str(tmp_path / "trimmed")).encode(OTHER_TEXTS, convert_to_numpy=True)
    assert np.isfinite(embeddings).all()


def test_loads_with_plain_sentence_transformers_and_reports(encoders, tmp_path):
    source = encoders["byte-fallback"]
    report = trim_vocabulary(source, TRIM_CORPUS, tmp_path / "trimmed", held_out=OTHER_TEXTS)
    plain, info = encode_in_plain_process(tmp_path / "trimmed", TRIM_CORPUS, tmp_path)
    expected = SentenceTransformer(str(source)).encode(TRIM_CORPUS, convert_to_numpy=True)
    np.testing.assert_allclose(plain, expected, atol=1e-5)
    trimmed_tokenizer = Tokenizer.from_file(str(tmp_path / "trimmed" / "tokenizer.json"))
    assert trimmed_tokenizer.id_to_token(info["first_ids"][-1]) == "<end_of_turn>"  # EOS appended, renumbered
    assert trimmed_tokenizer.id_to_token(info["eos_token_id"]) == "<end_of_turn>"
    # Report: in trim.json and in the card, after the card's existing text.
    written = json.loads((tmp_path / "trimmed" / REPORT_FILE).read_text())
    assert written == report.to_dict()
    assert written["parameters_after"] == sum(
        p.numel() for p in SentenceTransformer(str(tmp_path / "trimmed")).parameters()
    )
    assert written["parameters_after"] < written["parameters_before"]
    assert 0 < written["disk_bytes_after"] < written["disk_bytes_before"]
    card = (tmp_path / "trimmed" / "README.md").read_text()
    assert card.startswith((source / "README.md").read_text().rstrip())
    assert "## Vocabulary trimmed" in card and f"{report.vocab_after:,}" in card


def test_vocab_size_keeps_the_most_frequent_tokens_within_the_limit(encoders, tmp_path):
    source = encoders["byte-level"]
    full = trim_vocabulary(source, TRIM_CORPUS * 2 + ["dog dog dog dog"], tmp_path / "full", held_out=[])
    limit = full.kept_special + full.kept_alphabet + 10
    small = trim_vocabulary(
        source, TRIM_CORPUS * 2 + ["dog dog dog dog"], tmp_path / "small", vocab_size=limit, held_out=[]
    )
    assert small.vocab_after <= limit < full.vocab_after
    assert small.corpus_tokens_left_out > 0 and any("left out" in note for note in small.notes)
    vocab = Tokenizer.from_file(str(tmp_path / "small" / "tokenizer.json")).get_vocab()
    assert "Ġdog" in vocab  # the most frequent word token, with its merge intermediates
    assert "Ġguitar" not in vocab  # used once
    # Still exact for a text of kept tokens.
    assert tokens(tmp_path / "small", ["dog dog"]) == tokens(source, ["dog dog"])
    with pytest.raises(StPruneError, match=f"give at least {full.kept_special + full.kept_alphabet}"):
        trim_vocabulary(source, TRIM_CORPUS, tmp_path / "tiny", vocab_size=limit - 11)
    assert not (tmp_path / "tiny").exists()


def test_min_frequency_drops_rare_tokens(encoders, tmp_path):
    source = encoders["byte-level"]
    report = trim_vocabulary(source, ["a dog, a dog and a guitar"], tmp_path / "trimmed", min_frequency=2, held_out=[])
    vocab = Tokenizer.from_file(str(tmp_path / "trimmed" / "tokenizer.json")).get_vocab()
    assert "Ġdog" in vocab and "Ġguitar" not in vocab
    assert report.min_frequency == 2


def test_untied_lm_head_of_a_plain_transformers_folder_is_sliced(tiny_llm, tmp_path):
    source = tiny_llm("llama", layers=4)  # Llama: tie_word_embeddings False, so lm_head is a separate matrix
    trim_vocabulary(source, TRIM_CORPUS, tmp_path / "trimmed", held_out=[])
    original = AutoModelForCausalLM.from_pretrained(source).eval()
    trimmed = AutoModelForCausalLM.from_pretrained(tmp_path / "trimmed").eval()
    old_vocab = Tokenizer.from_file(str(source / "tokenizer.json")).get_vocab()
    new_tokenizer = Tokenizer.from_file(str(tmp_path / "trimmed" / "tokenizer.json"))
    old_ids = [old_vocab[new_tokenizer.id_to_token(i)] for i in range(new_tokenizer.get_vocab_size())]
    encoding = new_tokenizer.encode(TRIM_CORPUS[0])
    old_input = [old_ids[i] for i in encoding.ids]
    with torch.no_grad():
        before = original(torch.tensor([old_input])).logits[0][:, old_ids]
        after = trimmed(torch.tensor([encoding.ids])).logits[0]
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_trimmed_model_stays_trainable(encoders, tmp_path):
    from st_prune.training.trainer import TrainingConfig, train_pruned

    trim_vocabulary(encoders["byte-level"], TRIM_CORPUS, tmp_path / "trimmed", held_out=[])
    rows = [
        {"anchor": f"the {a} dog", "positive": f"a {a} fox", "negative": f"{b} guitar street"}
        for a, b in [("quick", "green"), ("lazy", "sun"), ("brown", "man"), ("green", "lazy")]
    ]
    model = encoder_from_llm(str(tmp_path / "trimmed"), max_seq_length=32)
    config = TrainingConfig(
        max_steps=2,
        batch_size=4,
        learning_rate=2e-3,
        warmup_steps=0,
        lora_r=4,
        lora_alpha=8,
        max_seq_length=32,
        logging_steps=1,
        save_steps=100,
    )
    before = model.encode(["the quick dog"], convert_to_numpy=True)
    trained = train_pruned(model, Dataset.from_list(rows), config, tmp_path / "trained")
    after = SentenceTransformer(str(tmp_path / "trained")).encode(["the quick dog"], convert_to_numpy=True)
    assert not np.allclose(before, after)  # the LoRA steps moved the merged weights
    assert trained[0].auto_model.get_input_embeddings().weight.shape[0] < 320


def write_wordpiece_or_unigram(folder: Path, kind: str) -> None:
    if kind == "WordPiece":
        model = models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]")
    else:
        model = models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], unk_id=0)
    Tokenizer(model).save(str(folder / "tokenizer.json"))


@pytest.mark.parametrize("kind", ["WordPiece", "Unigram"])
def test_tokenizers_that_cannot_be_trimmed_exactly_are_refused_in_one_line(encoders, kind, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(encoders["byte-level"], folder)
    write_wordpiece_or_unigram(folder, kind)
    with pytest.raises(StPruneError, match=f"holds a {kind} tokenizer") as error:
        trim_vocabulary(folder, TRIM_CORPUS, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_cli_trims_a_jsonl_corpus_and_refuses_bad_input(encoders, tmp_path, capsys):
    source = encoders["byte-level"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"anchor": a, "positive": p, "score": 1}) + "\n"
            for a, p in zip(TRIM_CORPUS[:2], TRIM_CORPUS[2:])
        )
    )
    assert read_corpus(corpus) == TRIM_CORPUS[:2] + TRIM_CORPUS[2:]  # every text column, not the number
    assert cli_main(["trim", str(source), "--corpus", str(corpus), "--output", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.index("\n}") + 2])["vocab_after"] < 320

    # An output with files in it: refused, and its files untouched.
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert cli_main(["trim", str(source), "--corpus", str(corpus), "--output", str(occupied)]) == 2
    assert "already has files" in capsys.readouterr().err and [p.name for p in occupied.iterdir()] == ["keep.txt"]

    # An empty corpus (blank lines only).
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert cli_main(["trim", str(source), "--corpus", str(empty), "--output", str(tmp_path / "o2")]) == 2
    error = capsys.readouterr().err
    assert "has no text" in error and error.count("\n") == 1 and not (tmp_path / "o2").exists()

    # A vocabulary size below specials + byte alphabet.
    assert (
        cli_main(["trim", str(source), "--corpus", str(corpus), "--vocab-size", "50", "--output", str(tmp_path / "o3")])
        == 2
    )
    assert "give at least" in capsys.readouterr().err and not (tmp_path / "o3").exists()
