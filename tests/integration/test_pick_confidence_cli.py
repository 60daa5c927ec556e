"""`st-prune scan` on a tiny model keeps the batch losses and prints how sure each pick is."""

from __future__ import annotations

import json

import numpy as np

from st_prune.cli import main


# ---------------------------------------------------------------------------------------------------------------------
# A real scan and the CLI
# ---------------------------------------------------------------------------------------------------------------------
def test_cli_scan_keeps_batch_losses_and_prints_the_confidence(tiny_llm, tmp_path, capsys):
    data = tmp_path / "triplets.jsonl"
    words = ["cat", "dog", "fox", "bank", "money", "music", "guitar", "field", "sun", "road", "debian", "package"]
    data.write_text(
        "".join(
            json.dumps(
                {
                    "anchor": f"the {words[i % 12]} and {words[(i + 1) % 12]}",
                    "positive": f"a {words[i % 12]} here",
                    "negative": f"the {words[(i + 5) % 12]} there",
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    output = tmp_path / "scan.json"
    assert (
        main(
            [
                "scan",
                str(tiny_llm("llama", layers=4)),
                "--data",
                str(data),
                "--batch-size",
                "4",
                "--num-batches",
                "3",
                "--max-seq-length",
                "32",
                "--output",
                str(output),
                "--no-plot",
            ]
        )
        == 0
    )
    stored = json.loads(output.read_text())
    assert np.asarray(stored["batch_losses"]).shape == (3, 4)
    assert np.allclose(np.mean(stored["batch_losses"], axis=0), stored["losses"])
    confidence = stored["pick_confidence"]
    assert (confidence["batches"], confidence["resamples"], confidence["seed"]) == (3, 1000, 42)
    printed = capsys.readouterr().out
    for pick in ("small", "large"):
        entry = confidence[pick]
        assert entry["depth"] == stored[pick]
        assert f"the pick in {100 * entry['share']:.0f} % of 1000 bootstrap resamples of the 3 batches" in printed
