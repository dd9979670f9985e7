"""The model server shipped in generated packages as `_serve` (standard library, FastAPI, uvicorn)."""
