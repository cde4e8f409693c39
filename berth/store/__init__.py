"""Revisioned key-value storage behind the API server (SQLite embedded; etcd for HA).

* :mod:`berth.store.interface` - the contract (:class:`~berth.store.interface.Store`), its
  data types and errors. Code against this.
* :mod:`berth.store.config` - ``open_store(DatastoreConfig.from_mapping(section))`` opens any
  backend from the API server's config.
* :mod:`berth.store.sqlite` - the embedded default: one file, one writer process.
* :mod:`berth.store.etcd` - etcd v3 over its JSON gateway, with mTLS and failover.
* :mod:`berth.store.memory` - in-memory, for tests and tools.
* :mod:`berth.store.compactor` - periodic compaction (one interval of history kept).
* :mod:`berth.store.snapshot` - consistent backups (and SQLite restore).
"""
