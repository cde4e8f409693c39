"""Revisioned key-value storage behind the API server (SQLite embedded; etcd for HA)."""
