"""Tables, target ratios and plots for `make bench-logic` (kept apart from the measuring).

The ratios are the ones issue 12 sets for the logic tier, each computed from peers measured
in the same run on the same machine, so they survive a noisy shared box better than any
absolute figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

GRAPH, KIT, RECIPE, KSERVE = "graph", "kit", "recipe", "kserve"
LABELS = {
    GRAPH: "graph tier alone (precomputed features)",
    KIT: "kit logic tier (logic-service)",
    RECIPE: "plain Flask recipe",
    KSERVE: "KServe v1 transformer",
}


@dataclass
class Measurement:
    """One server at one body size: serial latency, 16-client throughput, CPU per request."""

    server: str
    rows: int
    serial_ms: list[float] = field(default_factory=list)  # every serial latency, ms
    throughput: float = 0.0  # answered requests per second under load
    server_cpu_ms: float = 0.0  # the server's whole process tree, per request, under load
    graph_cpu_ms: float | None = None  # the graph tier behind it (two-tier servers only)
    client_cpu_ms: float = 0.0  # the load generator's own CPU per request
    requests: int = 0  # answered requests in the load phase
    errors: int = 0  # non-200 answers and connection errors, both phases

    @property
    def p50(self) -> float:
        return statistics.median(self.serial_ms) if self.serial_ms else float("nan")

    @property
    def p99(self) -> float:
        return percentile(self.serial_ms, 99)


@dataclass
class Target:
    name: str
    value: float | None
    limit: float
    at_most: bool  # True: value <= limit is met; False: value >= limit is met
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        if self.value is None:
            return f"- {self.name}: not measured (a server was missing) (target {sign} {self.limit:g}{self.unit})"
        verdict = "met" if self.met else "missed"
        # Three decimals: 0.104x must not print as a "missed" 0.10x.
        return f"- {self.name}: {self.value:.3f}{self.unit} (target {sign} {self.limit:g}{self.unit}): **{verdict}**"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: it is a latency someone actually saw)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def find(results: Sequence[Measurement], server: str, rows: int) -> Measurement | None:
    return next((m for m in results if m.server == server and m.rows == rows), None)


def targets(results: Sequence[Measurement]) -> list[Target]:
    """Issue 12's three ratios on 1-row requests."""
    graph, kit, recipe = (find(results, name, 1) for name in (GRAPH, KIT, RECIPE))
    cpu_ratio = kit.server_cpu_ms / recipe.server_cpu_ms if kit and recipe else None
    overhead = kit.p50 - graph.p50 if kit and graph else None
    rate_ratio = kit.throughput / graph.throughput if kit and graph else None
    return [
        Target("kit CPU per 1-row request / recipe's (16 clients)", cpu_ratio, 0.10, True, "x"),
        Target("serial 1-row p50: kit minus graph tier alone", overhead, 1.0, True, " ms"),
        Target(
            "16-client 1-row throughput: two tiers / graph tier alone", rate_ratio, 1.0, False, "x"
        ),
    ]


def _cell(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(results: Sequence[Measurement]) -> str:
    lines = [
        "| server | rows | serial p50 ms | serial p99 ms | req/s (16 clients) | server CPU ms/req "
        "| graph CPU ms/req | client CPU ms/req | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        lines.append(
            f"| {LABELS.get(m.server, m.server)} | {m.rows} | {m.p50:.2f} | {m.p99:.2f} "
            f"| {m.throughput:.0f} | {m.server_cpu_ms:.2f} | {_cell(m.graph_cpu_ms)} "
            f"| {m.client_cpu_ms:.2f} | {m.errors} |"
        )
    return "\n".join(lines)


def write_markdown(
    path: Path, results: Sequence[Measurement], goals: Sequence[Target], header: str
) -> None:
    text = [
        "# `make bench-logic`: latest run",
        "",
        header,
        "",
        markdown_table(results),
        "",
        "Targets (issue 12, 1-row bodies):",
        "",
        *(goal.line() for goal in goals),
        "",
        "![latency](latency.png)",
        "",
        "![throughput and CPU per request](throughput_cpu.png)",
        "",
    ]
    path.write_text("\n".join(text))


def write_plots(out_dir: Path, results: Sequence[Measurement]) -> list[Path]:
    """latency.png (serial latency distribution per server) and throughput_cpu.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [s for s in (GRAPH, KIT, RECIPE, KSERVE) if any(m.server == s for m in results)]
    sizes = sorted({m.rows for m in results})
    colours = dict(
        zip((GRAPH, KIT, RECIPE, KSERVE), ("#777777", "#1b7837", "#d95f02", "#386cb0"), strict=True)
    )

    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.2), squeeze=False)
    for ax, rows in zip(axes[0], sizes, strict=True):
        data = [find(results, s, rows) for s in servers]
        present = [(s, m) for s, m in zip(servers, data, strict=True) if m and m.serial_ms]
        parts = ax.violinplot(
            [m.serial_ms for _, m in present], showmedians=True, showextrema=False
        )
        for body, (server, _) in zip(parts["bodies"], present, strict=True):
            body.set_facecolor(colours[server])
            body.set_alpha(0.6)
        parts["cmedians"].set_color("black")
        ax.set_xticks(range(1, len(present) + 1), [s for s, _ in present])
        ax.set_yscale("log")
        ax.set_ylabel("serial latency, ms (log)")
        ax.set_title(f"one request at a time, {rows}-row body")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    latency = out_dir / "latency.png"
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(servers))
    for i, server in enumerate(servers):
        xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(sizes))]
        ms = [find(results, server, rows) for rows in sizes]
        left.bar(
            xs, [m.throughput if m else 0 for m in ms], width, label=server, color=colours[server]
        )
        right.bar(
            xs,
            [m.server_cpu_ms if m else 0 for m in ms],
            width,
            label=server,
            color=colours[server],
        )
        if server != GRAPH:
            right.bar(
                xs,
                [m.graph_cpu_ms or 0 if m else 0 for m in ms],
                width,
                bottom=[m.server_cpu_ms if m else 0 for m in ms],
                color=colours[server],
                alpha=0.3,
                hatch="//",
            )
    for ax, title, unit in (
        (left, "throughput, 16 clients", "requests/s"),
        (right, "CPU per request (hatched: graph tier behind it)", "ms of CPU"),
    ):
        ax.set_xticks(range(len(sizes)), [f"{rows}-row body" for rows in sizes])
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    left.legend()
    fig.tight_layout()
    throughput = out_dir / "throughput_cpu.png"
    fig.savefig(throughput, dpi=110)
    plt.close(fig)
    return [latency, throughput]
