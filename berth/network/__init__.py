"""Pod networking on a node: CNI plugin invocation, the node's pod network config, host-gw routes.

Standard library only (it runs on bare hosts next to the node agent).
"""
