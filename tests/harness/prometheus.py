"""A strict reader of the Prometheus text exposition format, for the unit and end-to-end metrics tests."""

from __future__ import annotations

import math
import re

Sample = tuple[str, frozenset[tuple[str, str]], float]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})? (?P<value>\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m[0]], value)


def parse(text: str) -> tuple[dict[str, tuple[str, str]], list[Sample]]:
    """(metric name -> (TYPE, HELP), samples); raises on any line that is not valid exposition format."""
    assert text.endswith("\n")
    families: dict[str, tuple[str, str]] = {}
    helps: dict[str, str] = {}
    samples: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            helps[name] = _unescape(help_text)
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE ") :].split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in families, f"TYPE of {name} twice"
            families[name] = (kind, helps[name])
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            labels: dict[str, str] = {}
            rest = match["labels"] or ""
            while rest:
                label = _LABEL.match(rest)
                assert label, f"bad labels in {line!r}"
                assert label[1] not in labels
                labels[label[1]] = _unescape(label[2])
                rest = rest[label.end() :]
            value = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(match["value"])
            samples.append(
                (match["name"], frozenset(labels.items()), float(match["value"]) if value is None else value)
            )
            family = re.sub(r"_(bucket|sum|count)$", "", match["name"])
            assert match["name"] in families or family in families, f"sample {match['name']} before its TYPE"
    return families, samples
