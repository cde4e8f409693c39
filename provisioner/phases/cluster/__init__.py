"""The cluster phases: what ``berth apply -i SPEC`` does after preflight.

``artifacts`` (the berth bundle) → ``pki`` (credentials, 0600 root-owned keys) → ``etcd`` (a
3-member cluster, only with ``datastore: etcd``) → ``datastore`` → ``lb`` (HA only: every
host's balancer in front of the API servers, :mod:`provisioner.phases.cluster.ha`) →
``control-plane`` (API server, controller manager, scheduler) → ``agents`` (every host is a
node) → ``nodes`` (roles, labels, taints through the API; hosts that left the spec drained,
deleted and cleaned) → ``cleanup`` (other bundle versions) → ``verify``.

They are listed, in order, by :func:`provisioner.phases.cluster.install.cluster_install_phases`;
the ``cluster`` phase set (:mod:`provisioner.phases.sets`) runs preflight, then these. This
package module imports nothing, so importing one of its modules (the host layout, say) does not
load every phase.
"""
