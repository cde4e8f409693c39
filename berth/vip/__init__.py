"""The API VIP: one virtual IPv4 address an HA cluster's clients dial, held by one
control-plane host at a time.

The holder is elected through the datastore with a ``coordination.k8s.io/v1`` Lease
(``kube-system/berth-vip``), as kube-vip does, using :mod:`berth.machinery.leaderelection`.
Each control-plane host runs ``berth-vip`` (``python -m berth.vip``), which campaigns through
its *own* API server: a renewal succeeds only while that server serves and reaches an etcd
quorum, so a host whose API server or datastore is gone loses the lease and drops the address.
The holder adds the address to its interface (``ip addr add VIP/32``) and announces it with
gratuitous ARP, so the neighbours' ARP caches move to its MAC at once (Talos and kube-vip
do the same).

Modules: :mod:`.config` (the YAML file), :mod:`.addresses` (``ip`` commands),
:mod:`.arp` (the gratuitous ARP frames), :mod:`.holder` (the hold/drop logic).
"""
