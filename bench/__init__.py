"""Inference benchmark (``python -m bench``): latency, FLOPs, memory and efficiency of every network."""
