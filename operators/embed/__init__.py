"""Embeddings: texts in, L2-normalised float32 vectors out, for retrieval."""
from operators.embed.engine import Embedder, EmbedError, Kind

__all__ = ["Embedder", "EmbedError", "Kind"]
