"""What a watch stream promises its client, shared by the API server and the informers."""

from __future__ import annotations

BOOKMARK_INTERVAL = 60.0
"""Seconds a watch that allows bookmarks goes without anything sent before the server sends a
BOOKMARK (the API server's ``watchBookmarkInterval`` default; upstream's is a minute too)."""

SILENCE_LIMIT = 2 * BOOKMARK_INTERVAL + 10.0
"""Seconds without any event, BOOKMARK included, after which a client takes a watch that
allowed bookmarks for dead: two bookmarks missed, with slack for a loaded server. A peer that
vanished without closing the connection (power cut, a partition behind the node's berth-lb)
sends nothing more and no FIN or RST either; without this the client waited for the read
timeout, the watch's timeoutSeconds plus a minute (six minutes)."""
