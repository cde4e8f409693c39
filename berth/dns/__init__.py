"""Cluster DNS: berth's own node-local DNS server, answering for the cluster domain as
CoreDNS's ``kubernetes`` plugin does and forwarding other names to the host's resolvers.

* :mod:`berth.dns.wire` — the DNS message format, only as much as a stub resolver's queries
  need, with every length bounded (queries come from any pod);
* :mod:`berth.dns.records` — Services and EndpointSlices in, the zone's records out;
* :mod:`berth.dns.forward` — other names to the host's resolvers, cached, failing fast;
* :mod:`berth.dns.server` — UDP and TCP on the node's ``clusterDNS`` address;
* :mod:`berth.dns.feed` — informers that rebuild the zone on every change.
"""
