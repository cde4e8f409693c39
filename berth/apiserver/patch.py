"""PATCH as the API server answers it: :mod:`berth.api.patches` applies the patch, this
module turns its errors into Status answers (400 for a malformed patch, 413 for too many JSON
patch operations, 422 for a patch that does not apply)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from berth.api import patches

from .errors import ApiError, bad_request


class PatchError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid", message)


def _answering(apply: Callable[..., Any], target: Any, patch: Any, **options: Any) -> Any:
    try:
        return apply(target, patch, **options)
    except patches.PatchFormatError as exc:
        raise bad_request(str(exc)) from None
    except patches.PatchTooLarge as exc:
        raise ApiError(413, "RequestEntityTooLarge", str(exc)) from None
    except patches.PatchError as exc:
        raise PatchError(str(exc)) from None


def json_merge_patch(target: Any, patch: Any) -> Any:
    return patches.json_merge_patch(target, patch)


def json_patch(doc: Any, ops: Any, *, owned: bool = False) -> Any:
    return _answering(patches.json_patch, doc, ops, owned=owned)


def strategic_merge_patch(original: Any, patch: Any) -> Any:
    return _answering(patches.strategic_merge_patch, original, patch)
