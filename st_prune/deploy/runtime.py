"""Embeddings from the exported files, run with onnxruntime or the OpenVINO runtime directly (no optimum).

Only the transformer runs in the exported graph. Tokenization before it and pooling after it are the
SentenceTransformer's own modules, exactly as in sentence-transformers' ONNX/OpenVINO backends: the
Transformer module's ``preprocess`` returns ``prompt_length`` beside the tensors, and the Pooling module
excludes the prompt from pooling after the backend has produced the token embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from st_prune.deploy.onnx import INPUT_NAMES

#: A compiled graph: {"input_ids": int64 array, "attention_mask": int64 array} -> last_hidden_state array.
GraphRunner = Callable[[dict[str, np.ndarray]], np.ndarray]


def onnx_runner(path: str | os.PathLike, threads: int | None = None) -> GraphRunner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda inputs: session.run(None, inputs)[0]


def openvino_runner(path: str | os.PathLike, threads: int | None = None, precision: str | None = "f32") -> GraphRunner:
    """``precision="f32"`` pins fp32 arithmetic (the runtime's default is bf16 on CPUs that support it);
    ``None`` keeps the runtime's default."""
    import openvino as ov

    config: dict[str, object] = {}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    return lambda inputs: request.infer(inputs)[output].copy()


def encode_with_graph(
    model,
    run_graph: GraphRunner,
    texts: Sequence[str],
    *,
    prompt: str | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Sentence embeddings of ``texts`` with ``model``'s tokenization and pooling around ``run_graph``.

    ``model`` is the SentenceTransformer the files were exported from (its first module is replaced by the graph).
    """
    # Longest texts first, as SentenceTransformer.encode batches them: batches of similar lengths pad less.
    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    embeddings = []
    for start in range(0, len(texts), batch_size):
        batch = [texts[index] for index in order[start : start + batch_size]]
        features = model.preprocess(batch, prompt=prompt)
        inputs = {name: features[name].numpy().astype(np.int64) for name in INPUT_NAMES}
        features["token_embeddings"] = torch.from_numpy(np.ascontiguousarray(run_graph(inputs)))
        with torch.no_grad():
            for module in list(model)[1:]:
                features = module(features)
        embeddings.append(features["sentence_embedding"].float().numpy())
    if not embeddings:
        return np.empty((0, model.get_embedding_dimension()), dtype=np.float32)
    return np.concatenate(embeddings)[np.argsort(order)]  # back to the order of ``texts``
