"""The benchmark's verdicts: each of issue 12's ratios is computed the right way round."""

from __future__ import annotations

from benchmarks.bench_report import (
    GRAPH,
    KIT,
    RECIPE,
    Measurement,
    markdown_table,
    percentile,
    targets,
    write_plots,
)


def _m(server, *, p50, rate, cpu, rows=1):
    return Measurement(server, rows, serial_ms=[p50] * 5, throughput=rate, server_cpu_ms=cpu)


def test_targets_met_and_missed():
    slow = [
        _m(GRAPH, p50=1.2, rate=700, cpu=1.6),
        _m(KIT, p50=9.1, rate=221, cpu=8.0),
        _m(RECIPE, p50=11.0, rate=209, cpu=8.0),
    ]
    cpu, latency, rate = targets(slow)
    assert (cpu.value, cpu.met) == (1.0, False)
    assert round(latency.value, 6) == 7.9 and latency.met is False
    assert round(rate.value, 3) == 0.316 and rate.met is False
    assert "**missed**" in cpu.line()

    fast = [
        _m(GRAPH, p50=1.2, rate=700, cpu=1.6),
        _m(KIT, p50=2.1, rate=750, cpu=0.7),
        _m(RECIPE, p50=11.0, rate=209, cpu=8.0),
    ]
    assert [goal.met for goal in targets(fast)] == [True, True, True]
    assert all("**met**" in goal.line() for goal in targets(fast))


def test_targets_use_one_row_figures_only():
    results = [
        _m(GRAPH, p50=1.0, rate=700, cpu=1.0),
        _m(KIT, p50=1.5, rate=800, cpu=0.5),
        _m(RECIPE, p50=5.0, rate=200, cpu=10.0),
        _m(KIT, p50=50.0, rate=10, cpu=100.0, rows=20),
    ]
    assert [goal.met for goal in targets(results)] == [True, True, True]


def test_a_missing_server_is_reported_not_guessed():
    goals = targets([_m(GRAPH, p50=1.0, rate=700, cpu=1.0)])
    assert all(goal.value is None and goal.met is None for goal in goals)
    assert all("not measured" in goal.line() for goal in goals)


def test_percentile_is_a_latency_that_was_seen():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in values
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0


def test_table_and_plots_are_written(tmp_path):
    results = [
        _m(GRAPH, p50=1.0, rate=700, cpu=1.0),
        Measurement(KIT, 1, [2.0, 2.5, 9.0], 300.0, 3.0, graph_cpu_ms=1.5, errors=2),
    ]
    table = markdown_table(results)
    assert table.count("\n") == 3  # header, rule, one line per measurement
    assert "| kit logic tier (logic-service) | 1 | 2.50 | 9.00 | 300 | 3.00 | 1.50 |" in table
    for path in write_plots(tmp_path, results):
        assert path.read_bytes().startswith(b"\x89PNG")
