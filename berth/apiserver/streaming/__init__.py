"""``pods/exec``, ``pods/attach`` and ``pods/portforward``: the client's streaming protocol
(WebSocket channels or SPDY/3.1) is spoken here and relayed to the node agent over one
mTLS WebSocket per session (exec/attach) or per forwarded connection (port-forward)."""
