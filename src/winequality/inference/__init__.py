"""Model-side pre/post-processing and the predictors (in-process ONNX, remote V2)."""
