"""Test harnesses: a real API server in process or as a child (apiserver), the in-memory
fake API client (fake_client) and the fake host connector (fake_connector). Not shipped:
the bundle that goes to every host carries only berth/."""
