"""The release workflow publishes what docs/install.md promises: on a version tag, the image and the chart as OCI
artifacts, the chart pointing at the image, and nothing released whose versions disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_runs_on_version_tags_only() -> None:
    workflow = _workflow()
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"push"} and triggers["push"] == {"tags": ["v*.*.*"]}
    assert workflow["permissions"] == {"contents": "read"}, "write access only in the jobs that push"


def test_publishes_image_then_chart_as_oci() -> None:
    jobs = _workflow()["jobs"]
    image_steps = {step.get("uses", "").split("@")[0]: step for step in jobs["image"]["steps"]}
    build = image_steps["docker/build-push-action"]["with"]
    assert build["push"] is True and "ghcr.io/" in build["tags"] and "needs.verify.outputs.version" in build["tags"]
    assert jobs["image"]["permissions"]["packages"] == "write"
    assert set(jobs["chart"]["needs"]) == {"verify", "image"}, "the chart is pushed only after its image"
    chart = _runs(jobs["chart"])
    assert "helm package charts/redisdb-operator" in chart
    assert 'helm push "dist/redisdb-operator-${{ needs.verify.outputs.version }}.tgz"' in chart
    assert '"oci://ghcr.io/' in chart
    assert "repository: $repository" in chart and "charts/redisdb-operator/values.yaml" in chart


def test_versions_must_agree_before_anything_is_pushed() -> None:
    verify = _runs(_workflow()["jobs"]["verify"])
    assert 'test "$tag" = "$package"' in verify and '"$tag" = "$app"' in verify
    assert "make lint unit" in verify and "helm lint --strict" in verify
