"""Walkers for document sources kept in sync: a folder on the worker's host and a web site."""
