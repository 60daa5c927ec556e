"""ONNX export of a decoder encoder's transformer: ``input_ids`` + ``attention_mask`` -> ``last_hidden_state``.

sentence-transformers' ONNX/OpenVINO backends (through optimum) feed a feature-extraction graph only
``input_ids`` and ``attention_mask``. Graphs exported the usual way for decoder LLMs also require
``position_ids`` (optimum's onnxruntime wrapper then fails; OpenVINO's returns NaN). This graph computes the
position ids itself from the mask (``cumsum(mask) - 1``, clamped at 0), so every caller that passes the two
standard inputs gets the torch model's token embeddings with left or right padding, and has no KV cache.

The legacy TorchScript exporter (``dynamo=False``) is used: it needs no onnxscript, and transformers' masking
code keeps the padding mask in the graph while tracing (``is_tracing``), so one trace serves any batch size,
sequence length and padding side.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

#: The graph's inputs and output, named as sentence-transformers' backends (optimum) look them up.
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"
#: Opset 17 has LayerNormalization and runs on onnxruntime >= 1.14 and every OpenVINO release that reads ONNX.
OPSET = 17
#: Beyond 2 GB protobuf cannot hold the weights inline; they go to one side file, ``model.onnx_data``: the name
#: optimum (sentence-transformers' ONNX backend) downloads beside ``model.onnx`` from the Hub.
EXTERNAL_DATA_SUFFIX = "_data"
#: Weights above this many bytes are written to the side file. Protobuf cannot serialize a message over 2 GiB, and
#: the int8 quantizer and the OpenVINO reader load and rewrite the graph, so leave room below the hard limit
#: (torch's dynamo exporter uses the same 1.5 GiB). Small models stay one self-contained file.
EXTERNAL_DATA_THRESHOLD = 1536 * 1024 * 1024


class EncoderGraph(nn.Module):
    """The transformers base model with position ids computed from the attention mask."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Position of each token among the real tokens: left padding starts the text at 0 like right padding
        # does. Pad positions become 0 (clamped); they are masked out of attention and pooling anyway.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        output = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return output.last_hidden_state


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of the module's parameters and buffers (tied weights once): about what the graph stores."""
    tensors = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())


def uses_external_data(path: str | os.PathLike) -> bool:
    """Whether the ONNX file at ``path`` keeps (some of) its weights in a side file."""
    import onnx
    from onnx.external_data_helper import uses_external_data as tensor_uses_external_data

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(tensor_uses_external_data(tensor) for tensor in graph.initializer)


def export_onnx(
    model: nn.Module,
    example: dict[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    external_data: bool | None = None,
) -> Path:
    """Write ``model`` (a transformers base model, float32, on CPU) as an ONNX graph to ``path``.

    ``example`` holds ``input_ids`` and ``attention_mask`` of a padded batch of at least two texts, so the
    trace goes through the padding-mask path. Batch and sequence axes are dynamic.

    ``external_data``: weights in one side file ``path + "_data"`` beside the graph. ``None`` (default) decides by
    size: above ``EXTERNAL_DATA_THRESHOLD`` bytes of weights. A graph too large for protobuf always gets one.
    """
    path = Path(path)
    if external_data is None:
        external_data = parameter_bytes(model) > EXTERNAL_DATA_THRESHOLD
    graph = EncoderGraph(model).eval()
    axes = {0: "batch_size", 1: "sequence_length"}
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=path.parent) as scratch:
        # The exporter writes one file per tensor beside the graph for models over 2 GB; export into an empty
        # folder so those can be gathered into one side file afterwards.
        scratch_path = Path(scratch) / path.name
        with torch.no_grad():
            torch.onnx.export(
                graph,
                (example["input_ids"], example["attention_mask"]),
                str(scratch_path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: axes for name in (*INPUT_NAMES, OUTPUT_NAME)},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        # Over protobuf's limit the exporter itself has written one file per tensor; gather them either way.
        if external_data or [entry.name for entry in Path(scratch).iterdir()] != [path.name]:
            _save_with_one_data_file(scratch_path, path)
        else:
            shutil.move(str(scratch_path), str(path))
    return path


def _save_with_one_data_file(source: Path, target: Path) -> None:
    """Save the graph at ``source`` (weights inline or in any side files) as ``target`` + ``target_data``."""
    import onnx

    proto = onnx.load(str(source), load_external_data=True)
    (target.parent / (target.name + EXTERNAL_DATA_SUFFIX)).unlink(missing_ok=True)  # onnx appends to an existing one
    onnx.save_model(
        proto,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=target.name + EXTERNAL_DATA_SUFFIX,
    )


def quantize_onnx_int8(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Dynamic int8 (weights quantized once, activations per call) of the fp32 graph at ``source``.

    - Weights are signed 7-bit per output channel (``reduce_range``), activations unsigned 8-bit: onnxruntime's
      u8*s8 kernels on x86 CPUs without AVX512-VNNI add pairs of products in int16, which 8-bit weights saturate on
      LLM activations (cosine 0.46 to fp32 on SmolLM2's 5-layer cut); 7-bit weights cannot (255 * 63 * 2 < 2^15).
      u8*s8 is the fast path on AVX2 and VNNI CPUs alike; unsigned weights (u8*u8, the earlier choice) ran about
      10 % slower here at the same accuracy. Hence sentence-transformers' file name ``model_qint8_avx2.onnx``.
    - The MLPs' down projections stay fp32. Their input (``act(gate) * up``) carries the few huge activations
      decoder LLMs are known for, which one per-tensor activation scale cannot resolve (worst cosine 0.967 with
      them in int8, 0.998 without).
    - The embedding table (Gather) stays fp32 too: it is looked up, not multiplied.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, target = Path(source), Path(target)
    graph = onnx.load(str(source), load_external_data=False).graph
    keep_fp32 = [node.name for node in graph.node if node.op_type == "MatMul" and "down_proj" in node.name]
    # A large fp32 graph gives a large int8 one (the embedding table and down projections stay fp32): keep its
    # weights in a side file too. The quantizer would name it ``<file>.data``; it is written to a scratch folder
    # and saved again as ``<file>_data``, the name optimum looks for.
    external = uses_external_data(source)
    with tempfile.TemporaryDirectory(prefix=".onnx-quantize-", dir=target.parent) as scratch:
        scratch_path = Path(scratch) / target.name if external else target
        quantize_dynamic(
            str(source),
            str(scratch_path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=keep_fp32,
            use_external_data_format=external,
        )
        if external:
            _save_with_one_data_file(scratch_path, target)
    return target
