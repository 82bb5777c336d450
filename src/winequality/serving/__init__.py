"""The FastAPI serving app: in-process ONNX or a V2 proxy."""
