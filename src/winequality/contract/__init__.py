"""The contract every component shares: feature schema, problem reports, pre/post-processing,
input parsers.

``schema``, ``problems`` and ``features`` depend on numpy and the standard library only (the Triton
export ships them to the Python backend); ``parsers`` adds orjson. Nothing here imports the rest
of this package: serving, monitoring, feedback, data validation, training and the Triton copy step
build on it (``tests/unit/contract/test_layering.py`` holds it so).
"""
