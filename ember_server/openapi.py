"""The OpenAPI document: FastAPI's, with the selection document's JSON Schema (ember_core/schemas) among its components."""
from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ember_core import limits
from ember_core.selection import SCHEMA_PATH
from ember_server.inputs import SelectFields, SelectForm, SelectJson

SELECTION = "SelectionDocument"
COMPONENTS = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    return {"$ref": COMPONENTS + name}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


SELECT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": ref(SelectJson.__name__)},
    "multipart/form-data": {"schema": ref(SelectForm.__name__)},
    "application/x-www-form-urlencoded": {"schema": ref(SelectFields.__name__)},
}}}
BATCH_BODY = {"requestBody": {"required": True, **json_content(
    {"type": "array", "items": ref(SelectJson.__name__), "minItems": 1, "maxItems": limits.MAX_HTTP_BATCH})}}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` add the selection schema and the request bodies the handlers read themselves."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(selection_components())
            for model in (SelectFields, SelectJson, SelectForm):
                schemas[model.__name__] = model.model_json_schema(ref_template=COMPONENTS + "{model}")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def selection_components() -> dict[str, Any]:
    """The selection JSON Schema as component SELECTION and its $defs as components SELECTION_<name>,
    references rewritten to point at them ($id and $schema dropped: components share the document's base)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    definitions = schema.pop("$defs")
    for key in ("$id", "$schema"):
        schema.pop(key)
    components = {SELECTION: schema, **{f"{SELECTION}_{name}": value for name, value in definitions.items()}}
    return _pointed(components)


def _pointed(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: (COMPONENTS + f"{SELECTION}_" + value.removeprefix("#/$defs/")
                      if key == "$ref" and value.startswith("#/$defs/") else _pointed(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_pointed(item) for item in node]
    return node
