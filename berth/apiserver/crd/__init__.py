"""CustomResourceDefinitions (``apiextensions.k8s.io/v1``): the pure core.

Modules here know nothing of HTTP or the store: they validate CRDs (``definition_validation``),
compile a version's ``openAPIV3Schema`` (``schema``) and apply it to custom objects
(``values``, ``defaulting``, ``pruning``), render printer columns (``printers``), map the
scale subresource (``scale``), decide which names a CRD may serve (``names``) and hold the
write strategy of custom objects (``strategy``). ``served`` turns a stored CRD into what the
API server serves.
"""
