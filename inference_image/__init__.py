"""The bundled inference runtime: an OpenAI-compatible server over transformers and torch.

Layers, from the wire inward: ``router`` (FastAPI app), ``serving`` (OpenAI semantics over
an abstract ``engine.Engine``), ``torch_engine`` (continuous batching on a real model).
Importing this package loads nothing heavy; torch and transformers load only with the engine.
"""
