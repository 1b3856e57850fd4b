"""The GraphQL reader on its own (pure, no server): literals, variables, fragments, errors."""

from __future__ import annotations

import pytest

from redisdb_dev.local_provider import graphql


def test_arguments_of_every_literal_kind_and_variables() -> None:
    document = graphql.parse(
        """
        # a comment
        mutation M($name: String = "fallback", $regions: [String!]!) {
          op: updateAddOn(input: {name: $name, readRegions: $regions, n: -3, f: 1.5e2, on: true, off: false,
                                  none: null, kind: upstash_redis, text: "a\\"b\\u00e9",
                                  block: \"\"\"x\"\"\"}) { addOn { id } }
        }
        """
    )
    operation = document.operation(None)
    assert operation.kind == "mutation" and operation.name == "M"
    variables = graphql.coerce_variables(operation, {"regions": ["ams"]})
    assert variables == {"name": "fallback", "regions": ["ams"]}
    [field] = graphql.root_fields(operation, document.fragments)
    assert field.key == "op" and field.name == "updateAddOn"
    arguments = graphql.resolve_value(field.arguments, variables)
    assert arguments == {
        "input": {
            "name": "fallback",
            "readRegions": ["ams"],
            "n": -3,
            "f": 150.0,
            "on": True,
            "off": False,
            "none": None,
            "kind": "upstash_redis",
            "text": 'a"bé',
            "block": "x",
        }
    }


def test_fragments_shape_results_and_unknown_fields_fail() -> None:
    document = graphql.parse(
        "query { addOn { ...A ... on AddOn { extra: name } } } fragment A on AddOn { id organization { slug } }"
    )
    operation = document.operation(None)
    [field] = graphql.root_fields(operation, document.fragments)
    value = {"id": "1", "name": "n", "organization": {"slug": "s", "id": "o"}, "secret": "x"}
    assert graphql.project(value, field.selections, document.fragments, {}) == {
        "id": "1",
        "organization": {"slug": "s"},
        "extra": "n",
    }
    bad = graphql.parse("query { addOn { nope } }")
    [bad_field] = graphql.root_fields(bad.operation(None), bad.fragments)
    with pytest.raises(graphql.GraphQLError, match='Cannot query field "nope"'):
        graphql.project({"id": "1"}, bad_field.selections, {}, {})


@pytest.mark.parametrize(
    "source",
    ["", "query {", "query { a(b: ) }", "query { a } }", "{ a(b: $v) }x", "query Q($v: Int = $w) { a }", "{ }"],
)
def test_syntax_errors(source: str) -> None:
    with pytest.raises(graphql.GraphQLError):
        graphql.parse(source)


def test_operation_selection() -> None:
    document = graphql.parse("query A { a } query B { b }")
    assert document.operation("B").name == "B"
    with pytest.raises(graphql.GraphQLError, match="operation name"):
        document.operation(None)
    with pytest.raises(graphql.GraphQLError, match="Unknown operation"):
        document.operation("C")
    with pytest.raises(graphql.GraphQLError, match="required type"):
        graphql.coerce_variables(graphql.parse("query Q($id: ID!) { a }").operation(None), {"id": None})
