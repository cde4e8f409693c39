"""Which resource an HPA's ``scaleTargetRef`` (apiVersion + kind) names: a built-in from the
resource table, else a custom resource whose CRD serves that version with a ``scale``
subresource (CRDs are listed at most once a minute, on a miss)."""

from __future__ import annotations

from berth.api.resources import CRD_RESOURCE, ResourceDef, for_kind
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock

CRD_REFRESH = 60.0


class TargetResolver:
    def __init__(self, client: ApiClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self._custom: dict[tuple[str, str], ResourceDef] = {}
        self._listed_at: float | None = None

    async def resolve(self, api_version: str, kind: str) -> ResourceDef:
        """The resource; LookupError when nothing serving ``/scale`` matches."""
        rd = for_kind(api_version, kind)
        if rd is not None:
            if "scale" not in rd.subresources:
                raise LookupError(f"{kind} in {api_version} has no scale subresource")
            return rd
        found = self._custom.get((api_version, kind))
        now = self.clock.monotonic()
        if found is None and (self._listed_at is None or now - self._listed_at > CRD_REFRESH):
            self._listed_at = now
            await self._load_crds()
            found = self._custom.get((api_version, kind))
        if found is None:
            raise LookupError(f'no matches for kind "{kind}" in version "{api_version}"')
        return found

    async def _load_crds(self) -> None:
        custom: dict[tuple[str, str], ResourceDef] = {}
        for crd in (await self.client.list(CRD_RESOURCE)).items:
            spec = crd.get("spec") or {}
            names = spec.get("names") or {}
            group = str(spec.get("group") or "")
            for v in spec.get("versions") or ():
                if not v.get("served") or "scale" not in (v.get("subresources") or {}):
                    continue
                rd = ResourceDef(
                    group=group,
                    version=str(v.get("name")),
                    plural=str(names.get("plural")),
                    singular=str(names.get("singular") or ""),
                    kind=str(names.get("kind")),
                    namespaced=spec.get("scope") == "Namespaced",
                    subresources=("scale",),
                )
                custom[(f"{group}/{rd.version}", rd.kind)] = rd
        self._custom = custom
