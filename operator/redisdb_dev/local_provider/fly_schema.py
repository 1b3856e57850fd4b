"""Fly's GraphQL schema (the subset in fly_schema.graphql) and the checks the real server makes before executing.

graphql-core validates each document as graphql-ruby does on Fly's side (unknown fields and arguments, wrong
variable types, a missing required input) and coerces its variables; the answers keep Fly's shape: HTTP 200 and
``{"errors": [{"message", "locations"}]}`` with no ``data``.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

SDL_PATH = Path(__file__).with_name("fly_schema.graphql")


@cache
def schema() -> GraphQLSchema:
    return build_schema(SDL_PATH.read_text())


def _error_json(error: GraphQLError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": error.message}
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    return body


@lru_cache(maxsize=512)
def _validated(query: str) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...]]:
    """The parsed document and its validation errors, once per query text: a client sends the same few queries
    again and again, and validating each one again was most of the provider's CPU in a 10,000-database burst."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return None, (_error_json(error),)
    return document, tuple(_error_json(error) for error in validate(schema(), document))


def check(query: str, variables: dict[str, Any], operation_name: str | None) -> tuple[list[dict[str, Any]], Any]:
    """(errors in Fly's shape, coerced variables): errors is empty when the document may run."""
    document, errors = _validated(query)
    if document is None or errors:
        return [dict(error) for error in errors], None
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return [{"message": "An operation name is required when a document holds several operations."}], None
    coerced = get_variable_values(schema(), operation.variable_definitions or (), variables)
    if isinstance(coerced, list):
        return [_error_json(error) for error in coerced], None
    return [], coerced
