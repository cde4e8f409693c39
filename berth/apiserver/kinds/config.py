"""ConfigMaps and Secrets: data maps; Secrets' ``stringData`` and service-account tokens."""

from __future__ import annotations

import base64

from berth.api import satoken
from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError
from berth.apiserver.selectors import path_getter
from berth.apiserver.tables import AGE, NAME, Column, Printer, age, created, name_of
from berth.apiserver.validation import data_fields

from .base import KindStrategy

CONFIGMAP = Printer(
    (NAME, Column("Data", type="integer"), AGE),
    lambda o: [
        name_of(o),
        len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        age(created(o)),
    ],
)

SECRET = Printer(
    (NAME, Column("Type"), Column("Data", type="integer"), AGE),
    lambda o: [
        name_of(o),
        o.get("type") or "Opaque",
        len(o.get("data") or {}),
        age(created(o)),
    ],
)


class ConfigMapStrategy(KindStrategy):
    kind = "ConfigMap"
    specless = True
    columns = CONFIGMAP

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return data_fields(obj, binary_fields=("binaryData",))


class SecretStrategy(KindStrategy):
    kind = "Secret"
    specless = True
    field_selectors = {"type": path_getter("type")}
    columns = SECRET

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def prepare_for_create(self, rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
        super().prepare_for_create(rd, obj, namespace)
        if obj.get("type") == satoken.TOKEN_SECRET_TYPE:
            # Only the token controller writes a token Secret's token (a signed legacy JWT
            # naming this Secret); whatever its creator wrote there is dropped.
            (obj.get("data") or {}).pop("token", None)
        return obj

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return data_fields(obj, binary_fields=("data", "binaryData"))
