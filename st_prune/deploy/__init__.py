"""CPU deployment: ONNX and OpenVINO files inside a model folder, checked against torch with their own runtimes."""
