"""A small GraphQL reader and result shaper: enough of the language for the documents Fly clients send.

It parses the whole executable grammar (operations, variables with defaults, arguments with every literal
kind, aliases, fragments, inline fragments; directives are read and ignored) so any client's spelling of the
known operations works; what it does not do is schema validation beyond "that field does not exist".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class GraphQLError(Exception):
    """A request-level error: reported in ``errors`` with no ``data``."""


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class EnumValue:
    name: str


@dataclass
class Field:
    name: str
    alias: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    selections: list[Selection] | None = None

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class FragmentSpread:
    name: str


@dataclass
class InlineFragment:
    selections: list[Selection]


Selection = Field | FragmentSpread | InlineFragment


@dataclass
class VariableDefinition:
    name: str
    type: str
    has_default: bool = False
    default: Any = None

    @property
    def required(self) -> bool:
        return self.type.endswith("!") and not self.has_default


@dataclass
class Operation:
    kind: str  # "query" | "mutation" | "subscription"
    name: str | None
    variables: list[VariableDefinition]
    selections: list[Selection]


@dataclass
class Document:
    operations: list[Operation]
    fragments: dict[str, list[Selection]]

    def operation(self, name: str | None) -> Operation:
        if name:
            for operation in self.operations:
                if operation.name == name:
                    return operation
            raise GraphQLError(f'Unknown operation named "{name}".')
        if len(self.operations) != 1:
            raise GraphQLError("Must provide operation name if query contains multiple operations.")
        return self.operations[0]


_TOKEN = re.compile(
    r"""
    (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&():=@\[\]{|}])
  | (?P<block>\"\"\"(?:\\\"\"\"|(?!\"\"\").)*\"\"\")
  | (?P<string>"(?:[^"\\\n\r]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped.startswith("u"):
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(u[0-9A-Fa-f]{4}|.)", replace, text)


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise GraphQLError(f"Syntax Error: unexpected character {source[position]!r} at offset {position}.")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind == "ignored":
            continue
        text = match.group()
        if kind == "block":
            tokens.append(("string", text[3:-3].replace('\\"""', '"""')))
        elif kind == "string":
            tokens.append(("string", _unescape(text[1:-1])))
        else:
            tokens.append((kind, text))
    tokens.append(("eof", ""))
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0

    def peek(self, text: str | None = None, kind: str | None = None) -> bool:
        token_kind, token_text = self.tokens[self.index]
        return (text is None or token_text == text) and (kind is None or token_kind == kind)

    def take(self, text: str | None = None, kind: str | None = None) -> str:
        token_text = self.tokens[self.index][1]
        if not self.peek(text, kind):
            wanted = text or kind
            found = token_text or "<EOF>"
            raise GraphQLError(f'Syntax Error: expected "{wanted}", found "{found}".')
        self.index += 1
        return token_text

    def name(self) -> str:
        return self.take(kind="name")

    def document(self) -> Document:
        operations: list[Operation] = []
        fragments: dict[str, list[Selection]] = {}
        while not self.peek(kind="eof"):
            if self.peek("{"):
                operations.append(Operation("query", None, [], self.selection_set()))
            elif self.peek("fragment"):
                self.take("fragment")
                fragment_name = self.name()
                self.take("on")
                self.name()
                self.directives()
                fragments[fragment_name] = self.selection_set()
            elif self.peek("query") or self.peek("mutation") or self.peek("subscription"):
                kind = self.name()
                operation_name = self.name() if self.peek(kind="name") else None
                variables = self.variable_definitions()
                self.directives()
                operations.append(Operation(kind, operation_name, variables, self.selection_set()))
            else:
                raise GraphQLError(f'Syntax Error: unexpected "{self.tokens[self.index][1]}".')
        if not operations:
            raise GraphQLError("The document contains no operation.")
        return Document(operations, fragments)

    def variable_definitions(self) -> list[VariableDefinition]:
        definitions: list[VariableDefinition] = []
        if not self.peek("("):
            return definitions
        self.take("(")
        while not self.peek(")"):
            self.take("$")
            variable_name = self.name()
            self.take(":")
            definition = VariableDefinition(variable_name, self.type_reference())
            if self.peek("="):
                self.take("=")
                definition.has_default = True
                definition.default = self.value(const=True)
            self.directives()
            definitions.append(definition)
        self.take(")")
        return definitions

    def type_reference(self) -> str:
        if self.peek("["):
            self.take("[")
            inner = self.type_reference()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.name()
        if self.peek("!"):
            self.take("!")
            text += "!"
        return text

    def directives(self) -> None:
        while self.peek("@"):
            self.take("@")
            self.name()
            self.arguments()

    def selection_set(self) -> list[Selection]:
        self.take("{")
        selections: list[Selection] = []
        while not self.peek("}"):
            if self.peek("..."):
                self.take("...")
                if self.peek("on"):
                    self.take("on")
                    self.name()
                    self.directives()
                    selections.append(InlineFragment(self.selection_set()))
                elif self.peek("{") or self.peek("@"):
                    self.directives()
                    selections.append(InlineFragment(self.selection_set()))
                else:
                    selections.append(FragmentSpread(self.name()))
                    self.directives()
                continue
            first = self.name()
            alias, field_name = (first, self.name()) if self.peek(":") and self.take(":") else (None, first)
            arguments = self.arguments()
            self.directives()
            sub_selections = self.selection_set() if self.peek("{") else None
            selections.append(Field(field_name, alias, arguments, sub_selections))
        self.take("}")
        if not selections:
            raise GraphQLError("Syntax Error: empty selection set.")
        return selections

    def arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if not self.peek("("):
            return arguments
        self.take("(")
        while not self.peek(")"):
            argument_name = self.name()
            self.take(":")
            arguments[argument_name] = self.value(const=False)
        self.take(")")
        return arguments

    def value(self, *, const: bool) -> Any:
        kind, text = self.tokens[self.index]
        if text == "$" and kind == "punct":
            if const:
                raise GraphQLError("Syntax Error: variables are not allowed here.")
            self.take("$")
            return Variable(self.name())
        if kind == "punct" and text == "[":
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value(const=const))
            self.take("]")
            return items
        if kind == "punct" and text == "{":
            self.take("{")
            fields: dict[str, Any] = {}
            while not self.peek("}"):
                key = self.name()
                self.take(":")
                fields[key] = self.value(const=const)
            self.take("}")
            return fields
        self.index += 1
        if kind == "string":
            return text
        if kind == "number":
            return float(text) if any(char in text for char in ".eE") else int(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, EnumValue(text))
        raise GraphQLError(f'Syntax Error: unexpected "{text or "<EOF>"}".')


@functools.lru_cache(maxsize=512)
def parse(source: str) -> Document:
    """The parsed document (once per query text: the result is only read, never changed)."""
    return _Parser(source).document()


def coerce_variables(operation: Operation, given: dict[str, Any]) -> dict[str, Any]:
    """Apply defaults and refuse a missing required variable, like a real server's variable coercion."""
    values: dict[str, Any] = {}
    for definition in operation.variables:
        if definition.name in given and not (given[definition.name] is None and definition.type.endswith("!")):
            values[definition.name] = given[definition.name]
        elif definition.has_default:
            values[definition.name] = definition.default
        elif definition.type.endswith("!"):
            raise GraphQLError(f'Variable "${definition.name}" of required type "{definition.type}" was not provided.')
        else:
            values[definition.name] = None
    return values


def resolve_value(value: Any, variables: dict[str, Any]) -> Any:
    """An argument literal with its variables substituted and enum values turned into their names."""
    if isinstance(value, Variable):
        if value.name not in variables:
            raise GraphQLError(f'Variable "${value.name}" is not defined.')
        return variables[value.name]
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [resolve_value(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: resolve_value(item, variables) for key, item in value.items()}
    return value


def project(
    value: Any,
    selections: list[Selection] | None,
    fragments: dict[str, list[Selection]],
    variables: dict[str, Any],
) -> Any:
    """Shape a resolved object to the selection set; a callable member is a field with arguments."""
    if value is None or selections is None:
        return value
    if isinstance(value, list):
        return [project(item, selections, fragments, variables) for item in value]
    if not isinstance(value, dict):
        raise GraphQLError("Field of scalar type must not have a selection set.")
    result: dict[str, Any] = {}
    for selected in _expand(selections, fragments):
        if selected.name == "__typename":
            result[selected.key] = value.get("__typename", "Object")
            continue
        if selected.name not in value:
            type_name = value.get("__typename", "Object")
            raise GraphQLError(f'Cannot query field "{selected.name}" on type "{type_name}".')
        member = value[selected.name]
        if callable(member):
            resolver: Callable[[dict[str, Any]], Any] = member
            member = resolver(resolve_value(selected.arguments, variables))
        result[selected.key] = project(member, selected.selections, fragments, variables)
    return result


def _expand(selections: list[Selection], fragments: dict[str, list[Selection]]) -> list[Field]:
    fields: list[Field] = []
    for selection in selections:
        if isinstance(selection, Field):
            fields.append(selection)
        elif isinstance(selection, InlineFragment):
            fields.extend(_expand(selection.selections, fragments))
        else:
            if selection.name not in fragments:
                raise GraphQLError(f'Unknown fragment "{selection.name}".')
            fields.extend(_expand(fragments[selection.name], fragments))
    return fields


def root_fields(operation: Operation, fragments: dict[str, list[Selection]]) -> list[Field]:
    return _expand(operation.selections, fragments)
