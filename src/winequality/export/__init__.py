"""Model export: ONNX (with a parity check) and the Triton model repository."""
