"""The contract every component shares: feature schema, pre/post-processing, input parsers.

Depends on numpy, pydantic and the standard library only, and on nothing else in this package:
serving, monitoring, feedback, data validation and the Triton copy step build on it.
"""
