"""The controller manager: builds the controllers on shared informers and runs them.

Concurrency contract: one loop; informers start first and every controller's workers start
only after all caches have synced (so no reconcile sees a half-filled cache); each controller
runs its own workers on its own queue; :meth:`ControllerManager.run` returns only when
cancelled (it then shuts the queues down and stops the informers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from berth.api import satoken
from berth.api.loadbalancers import Pool
from berth.api.resources import (
    CRONJOBS,
    EVENTS,
    HORIZONTALPODAUTOSCALERS,
    JOBS,
    REPLICATIONCONTROLLERS,
    ResourceDef,
)
from berth.client.interface import ApiClient
from berth.controllers.autoscaling.controller import HorizontalPodAutoscalerController
from berth.controllers.context import Context
from berth.controllers.cronjob import CronJobController
from berth.controllers.daemonset import DaemonSetController
from berth.controllers.deployment import DeploymentController
from berth.controllers.endpoints import EndpointsController
from berth.controllers.endpointslices import EndpointSliceController
from berth.controllers.garbagecollector import GarbageCollector
from berth.controllers.job import JobController
from berth.controllers.kinds import MANAGED
from berth.controllers.namespace import NamespaceController
from berth.controllers.nodeipam import NodeIpamController
from berth.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController
from berth.controllers.podgc import PodGarbageCollector
from berth.controllers.replicaset import ReplicaSetController
from berth.controllers.replicationcontroller import ReplicationControllerController
from berth.controllers.resourcequota import ResourceQuotaController
from berth.controllers.satokens import TokensController
from berth.controllers.serviceaccounts import RootCAPublisher, ServiceAccountsController
from berth.controllers.servicelb import ServiceLBController
from berth.controllers.statefulset import StatefulSetController
from berth.controllers.ttlafterfinished import TTLAfterFinishedController
from berth.controllers.volumes import VolumeController
from berth.machinery.clock import Clock
from berth.machinery.controller import Controller
from berth.machinery.events import EventRecorder
from berth.machinery.informer import InformerFactory

ALL_CONTROLLERS = (
    "replicaset",
    "replicationcontroller",
    "deployment",
    "daemonset",
    "statefulset",
    "nodelifecycle",
    "endpoints",
    "endpointslice",
    "namespace",
    "garbagecollector",
    "nodeipam",
    "podgc",
    "serviceaccount",
    "root-ca-cert-publisher",
    "serviceaccount-token",
    "resourcequota",
    "persistentvolume-binder",
    "job",
    "cronjob",
    "ttl-after-finished",
    "horizontalpodautoscaling",
    "service-lb",
)


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    controllers: Sequence[str] = ALL_CONTROLLERS
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)
    workers: int = 4
    # The cluster CA published as each namespace's kube-root-ca.crt and put in token Secrets
    # (None: neither the publisher nor the token controller runs).
    root_ca_pem: bytes | None = None
    # Signs legacy token Secrets' tokens (None: the token controller does not run).
    service_account_signer: satoken.Signer | None = None
    hpa_sync_period: float = 15.0  # kube: --horizontal-pod-autoscaler-sync-period
    # LoadBalancer Services' address pool (CIDRs or ranges); empty: the nodes' addresses
    load_balancer_pool: tuple[str, ...] = ()


class ControllerManager:
    """Build with :meth:`create` (it asks the server which resources it serves)."""

    @classmethod
    async def create(
        cls, client: ApiClient, clock: Clock, config: ManagerConfig
    ) -> ControllerManager:
        served = [r for r in MANAGED if await client.served(r)]
        return cls(client, clock, config, served=served)

    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        config: ManagerConfig,
        *,
        served: Sequence[ResourceDef] = MANAGED,
    ) -> None:
        unknown = set(config.controllers) - set(ALL_CONTROLLERS)
        if unknown:
            raise ValueError(
                f"unknown controller(s) {sorted(unknown)}; known: {', '.join(ALL_CONTROLLERS)}"
            )
        self.informers = InformerFactory(client, clock=clock)
        self.ctx = Context(
            client,
            self.informers,
            clock,
            EventRecorder(client, clock, component="berth-controller-manager"),
        )
        want = set(config.controllers)
        self.replicasets = (
            ReplicaSetController(self.ctx, workers=config.workers) if "replicaset" in want else None
        )
        # core/v1 (only when the server serves it: an older berth has no RCs to watch)
        self.replicationcontrollers = (
            ReplicationControllerController(self.ctx, workers=config.workers)
            if "replicationcontroller" in want and REPLICATIONCONTROLLERS in served
            else None
        )
        self.deployments = (
            DeploymentController(self.ctx, workers=config.workers) if "deployment" in want else None
        )
        self.daemonsets = DaemonSetController(self.ctx) if "daemonset" in want else None
        self.statefulsets = StatefulSetController(self.ctx) if "statefulset" in want else None
        self.nodelifecycle = (
            NodeLifecycleController(self.ctx, config.node_lifecycle)
            if "nodelifecycle" in want
            else None
        )
        self.endpoints = EndpointsController(self.ctx) if "endpoints" in want else None
        self.endpointslices = EndpointSliceController(self.ctx) if "endpointslice" in want else None
        self.namespaces = (
            NamespaceController(self.ctx, resources=[r for r in served if r.namespaced])
            if "namespace" in want
            else None
        )
        self.gc = (
            GarbageCollector(self.ctx, resources=[r for r in served if r != EVENTS])
            if "garbagecollector" in want
            else None
        )
        self.nodeipam = (
            NodeIpamController(
                self.ctx,
                cluster_cidr=config.cluster_cidr,
                node_mask_size=config.node_cidr_mask_size,
            )
            if "nodeipam" in want
            else None
        )
        self.podgc = PodGarbageCollector(self.ctx) if "podgc" in want else None
        self.volumes = VolumeController(self.ctx) if "persistentvolume-binder" in want else None
        self.serviceaccounts = (
            ServiceAccountsController(self.ctx) if "serviceaccount" in want else None
        )
        ca = config.root_ca_pem
        self.root_ca = (
            RootCAPublisher(self.ctx, ca)
            if "root-ca-cert-publisher" in want and ca is not None
            else None
        )
        self.autoscaler = (
            HorizontalPodAutoscalerController(self.ctx, sync_period=config.hpa_sync_period)
            if "horizontalpodautoscaling" in want and HORIZONTALPODAUTOSCALERS in served
            else None
        )
        self.resourcequota = ResourceQuotaController(self.ctx) if "resourcequota" in want else None
        signer = config.service_account_signer
        self.tokens = (
            TokensController(self.ctx, signer, ca)
            if "serviceaccount-token" in want and signer is not None and ca is not None
            else None
        )

        self.servicelb = (
            ServiceLBController(self.ctx, Pool.parse(config.load_balancer_pool))
            if "service-lb" in want
            else None
        )

        # batch/v1 (only when the server serves it: an older server has no Jobs to watch)
        batch = JOBS in served
        self.jobs = (
            JobController(self.ctx, workers=config.workers) if "job" in want and batch else None
        )
        self.cronjobs = (
            CronJobController(self.ctx) if "cronjob" in want and CRONJOBS in served else None
        )
        self.ttl = (
            TTLAfterFinishedController(self.ctx) if "ttl-after-finished" in want and batch else None
        )

    @property
    def controllers(self) -> list[Controller]:
        parts = (
            self.replicasets,
            self.replicationcontrollers,
            self.deployments,
            self.daemonsets,
            self.statefulsets,
            self.nodelifecycle,
            self.endpoints,
            self.endpointslices,
            self.namespaces,
            self.gc,
            self.nodeipam,
            self.podgc,
            self.volumes,
            self.serviceaccounts,
            self.root_ca,
            self.tokens,
            self.resourcequota,
            self.jobs,
            self.cronjobs,
            self.ttl,
            self.autoscaler,
            self.servicelb,
        )
        return [p.controller for p in parts if p is not None]

    async def run(self) -> None:
        self.informers.start()
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.informers.wait_for_sync()
            tasks = [asyncio.create_task(c.run(), name=c.name) for c in self.controllers]
            if self.nodelifecycle is not None:
                tasks.append(asyncio.create_task(self.nodelifecycle.run_monitor()))
            await asyncio.gather(*tasks)
        finally:
            for c in self.controllers:
                c.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.informers.stop()
