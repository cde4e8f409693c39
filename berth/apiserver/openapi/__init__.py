"""OpenAPI documents (``/openapi/v2``, ``/openapi/v3``) and field validation (unknown and
duplicate fields, ``fieldValidation=Strict|Warn|Ignore``), both built from the upstream
Kubernetes schemas (see :mod:`.definitions`)."""
