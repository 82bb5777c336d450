"""Sources of the Triton Python-backend models, copied as ``model.py`` by
``export/triton_repository.py``.

They run inside Triton's Python stub, not in this package: nothing here imports them.
"""
