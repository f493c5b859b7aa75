"""Training package: data, degradations, losses, metrics, ``fit()`` and evaluation.

Depends on :mod:`models` (architectures, registry, image reader), never the
other way round. Entry point: ``python -m train fit|eval`` (see ``train/__main__.py``).
"""
