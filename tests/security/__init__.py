"""Attacks on a running berth, one module per surface.

Each test plays a hostile tenant (an identity with few or no rights) or a compromised node (a
node's own certificate) against a real API server on 127.0.0.1, or calls the node code directly
with hostile input, and asserts that the attack fails. Every test here failed on the code before
its fix.
"""
