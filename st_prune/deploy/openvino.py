"""OpenVINO IR (``openvino_model.xml`` + ``.bin``) converted from the exported ONNX graph.

Converting the ONNX file (not the torch module) gives both backends the same graph, position ids from the mask
included. Two details make the files work with sentence-transformers' OpenVINO backend (optimum-intel), which
looks inputs up by ``port.get_any_name()``:

- OpenVINO merges tensor names; the ONNX ``attention_mask`` input comes back also named after the Cast that
  reads it, and ``get_any_name()`` may return that one. Each input and the output are renamed to exactly their
  ONNX name.
- ``ov.save_model`` compresses weights to fp16 by default; the fp32 file keeps fp32 weights so it reproduces
  torch (the runtime may still pick bf16 arithmetic on CPUs that have it, unless told
  ``INFERENCE_PRECISION_HINT=f32``).
"""

from __future__ import annotations

import os
from pathlib import Path

from st_prune.deploy.onnx import INPUT_NAMES, OUTPUT_NAME


def convert_onnx_to_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike) -> Path:
    import openvino as ov

    # The runtime's ONNX reader gives the same ov.Model as ov.convert_model (which wraps it) in a tenth of the time.
    model = ov.Core().read_model(str(onnx_path))
    for port, name in zip(model.inputs, INPUT_NAMES):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def compress_openvino_int8(source_xml: str | os.PathLike, target_xml: str | os.PathLike) -> Path:
    """Int8 weight-only compression (NNCF ``compress_weights``, asymmetric, per output channel) of an fp32 IR.

    Activations stay floating point, so there is no calibration data and no activation-outlier error; the
    matrix weights (embedding table included) shrink 4x and the CPU plugin multiplies with int8 kernels.
    """
    import nncf
    import openvino as ov

    core = ov.Core()
    compressed = nncf.compress_weights(core.read_model(str(source_xml)), mode=nncf.CompressWeightsMode.INT8_ASYM)
    ov.save_model(compressed, str(target_xml), compress_to_fp16=False)
    return Path(target_xml)
