"""Shared API object helpers: the resource table and ObjectMeta handling.

Dependency-light on purpose: the API server, controllers and node agent all import it.
"""
