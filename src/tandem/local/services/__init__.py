"""Local PostgreSQL (with pgvector) and Redis servers, run as supervised foreground processes.

Kept import-free: `python -m tandem.local.services.privileges` runs before every root-started
server, and the servers' own packages are an optional extra (`tandem[local]`).
"""
