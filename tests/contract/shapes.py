"""Compare the shape of two JSON answers: keys, JSON types and enum values, never the values themselves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Fields whose values are an enumeration in the providers' documentation (reference sections 1.5 and 3.4).
ENUMS: dict[str, frozenset[str]] = {
    "type": frozenset({"free", "payg", "pro", "paid"}),  # Upstash Database.type
    "state": frozenset({"active", "suspended", "passive"}),  # Upstash Database.state
}


# Free-form JSON scalars (Fly's AddOn.options and .metadata): only "an object" is promised, not its keys.
OPAQUE = frozenset({"options", "metadata"})


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_problems(
    documented: Any,
    actual: Any,
    *,
    path: str = "$",
    nullable: frozenset[str] = frozenset(),
    allowed_extra: frozenset[str] = frozenset(),
) -> list[str]:
    """Where ``actual`` departs from ``documented``: a missing key, another JSON type, a value outside an enum,
    or a key the documentation does not have (unless it is in ``allowed_extra``). ``nullable`` names keys that
    may be null on either side (GraphQL nullable fields)."""
    problems: list[str] = []
    key = path.rsplit(".", 1)[-1]
    if key in nullable and (documented is None or actual is None):
        return problems
    if json_type(documented) != json_type(actual):
        return [f"{path}: documented {json_type(documented)}, got {json_type(actual)}"]
    if key in OPAQUE:
        return problems
    if isinstance(documented, Mapping):
        for name, value in documented.items():
            if name not in actual:
                problems.append(f"{path}.{name}: documented, missing")
            else:
                problems += shape_problems(
                    value, actual[name], path=f"{path}.{name}", nullable=nullable, allowed_extra=allowed_extra
                )
        for name in actual:
            if name not in documented and name not in allowed_extra:
                problems.append(f"{path}.{name}: not in the documented shape")
    elif isinstance(documented, list) and documented and actual:
        for index, item in enumerate(actual):
            problems += shape_problems(
                documented[0], item, path=f"{path}[{index}]", nullable=nullable, allowed_extra=allowed_extra
            )
    elif isinstance(actual, str) and key in ENUMS and actual not in ENUMS[key]:
        problems.append(f"{path}: {actual!r} is not one of {sorted(ENUMS[key])}")
    return problems
