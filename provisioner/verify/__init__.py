"""Verification of hosts (testinfra over berth's SSH connector) and of the cluster (through the
API): ``berth verify``, the end of ``berth apply``, and the clean-host check of ``berth destroy``.
"""
