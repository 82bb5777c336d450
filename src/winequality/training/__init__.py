"""Training, tuning, evaluation and the MLflow model registry."""
