"""Artifacts shipped to hosts: .deb files resolved against each host's dpkg status, and the
berth site-packages bundle for the host's Python. Both are cached on this machine and stored
content-addressed (by SHA-256) on hosts."""
