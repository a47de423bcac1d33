"""The indexing worker's stages: parse an upload, chunk it for the embedding model."""
