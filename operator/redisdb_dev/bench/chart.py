"""The PNG of a benchmark run: the single-apply latency distribution against its floor, and time-to-Ready curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency_axes, curve_axes, webhook_axes) = plt.subplots(1, 3, figsize=(18, 4.8))
    meta = results["meta"]
    figure.suptitle(
        f"redisdb-operator bench {meta['date']} - {meta['machine']['cpus']} cores, "
        f"provider latency {meta['settings']['provider_latency_ms']} ms per call",
        fontsize=11,
    )

    single = results.get("single")
    if single:
        latencies = single["latencies_ms"]
        latency_axes.hist(latencies, bins=min(30, max(5, len(latencies) // 2)), color="#4c72b0", alpha=0.85)
        floor = single["floor"]["floor_ms"]
        latency_axes.axvline(floor, color="black", linestyle="--", label=f"floor {floor:.0f} ms")
        latency_axes.axvline(1.5 * floor, color="grey", linestyle=":", label=f"1.5x floor {1.5 * floor:.0f} ms")
        for key, style in (("p50_ms", "-"), ("p99_ms", "-.")):
            value = single["apply_to_ready"][key]
            latency_axes.axvline(value, color="#c44e52", linestyle=style, label=f"{key[:3]} {value:.0f} ms")
        latency_axes.set_title(f"single apply -> Ready ({len(latencies)} runs, idle)")
        latency_axes.set_xlabel("ms")
        latency_axes.set_ylabel("runs")
        latency_axes.legend(fontsize=8)
    else:
        latency_axes.set_visible(False)

    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2"]
    for index, run in enumerate(results.get("bulk") or []):
        color = colors[index % len(colors)]
        size = run["databases"]
        for phase, style in (("create", "-"), ("update", "--"), ("delete", ":")):
            curve = run.get(phase, {}).get("curve_s") or []
            if curve:
                curve_axes.step(
                    curve,
                    range(1, len(curve) + 1),
                    where="post",
                    color=color,
                    linestyle=style,
                    label=f"{size}: {phase} ({run[phase]['seconds']:.1f} s)",
                )
    if results.get("bulk"):
        curve_axes.set_title("bulk: resources done vs seconds since the first apply")
        curve_axes.set_xlabel("s")
        curve_axes.set_ylabel("RedisDatabases Ready / updated / deleted")
        curve_axes.legend(fontsize=8)
    else:
        curve_axes.set_visible(False)

    webhook = results.get("webhook")
    if webhook and webhook["webhook"].get("latencies_ms"):
        latencies = webhook["webhook"]["latencies_ms"]
        webhook_axes.hist(latencies, bins=40, color="#8172b2", alpha=0.85)
        for key, style in (("p50_ms", "-"), ("p99_ms", "-.")):
            value = webhook["webhook"][key]
            webhook_axes.axvline(value, color="#c44e52", linestyle=style, label=f"{key[:3]} {value:.1f} ms")
        webhook_axes.axvline(50, color="grey", linestyle=":", label="target p99 50 ms")
        webhook_axes.set_title(f"webhook admission latency, {webhook['concurrency']} in flight")
        webhook_axes.set_xlabel("ms")
        webhook_axes.set_ylabel("reviews")
        webhook_axes.legend(fontsize=8)
    else:
        webhook_axes.set_visible(False)

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
