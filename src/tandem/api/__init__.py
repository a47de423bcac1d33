"""The API server: uploads, index attempts, documents and search."""
