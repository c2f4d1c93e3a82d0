"""Geofence evaluation speed on the reference workload (benchmarks/workload.py).

Targets (issue 2): classification ≥ 25 M fixes/s and ≥ 5× prepared shapely;
classification plus signed distance within 10 m ≥ 10 M fixes/s. Run with `make bench`.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
import shapely

from benchmarks.conftest import NOTES, record
from geofence.index import FenceIndex

LOOP_SAMPLE = 20_000


@pytest.fixture(scope="module")
def index(workload):
    tracemalloc.start()
    started = time.perf_counter()
    built = FenceIndex.build(workload.corridors, cell_m=1.0, horizon_m=10.0)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_thousand = 1000 / built.fence_count
    NOTES["memory"] = (
        f"index memory: {built.nbytes * per_thousand / 2**20:.1f} MiB per 1,000 fences "
        f"({built.fence_count} corridors; build {seconds:.1f} s, peak {peak / 2**20:.0f} MiB)"
    )
    return built


@pytest.fixture(scope="module")
def prepared_union(workload):
    union = shapely.union_all(workload.corridors)
    shapely.prepare(union)
    return union


def test_ours_classify(benchmark, workload, index, prepared_union):
    fence = benchmark(index.classify, workload.x_m, workload.y_m)
    record("ours: classify", benchmark, workload.x_m.size)
    # for a point, intersects is covers: the same question the index answers
    covered = shapely.intersects_xy(prepared_union, workload.x_m, workload.y_m)
    np.testing.assert_array_equal(fence >= 0, covered)


def test_ours_evaluate(benchmark, workload, index):
    _fence, distance = benchmark(index.evaluate, workload.x_m, workload.y_m)
    record("ours: evaluate (class + signed distance)", benchmark, workload.x_m.size)
    near = np.abs(distance) < 10.0
    NOTES["near"] = f"fixes within 10 m of a boundary: {near.mean():.0%}"


def test_peer_prepared_contains_xy(benchmark, workload, prepared_union):
    benchmark(shapely.contains_xy, prepared_union, workload.x_m, workload.y_m)
    record("peer: shapely contains_xy, prepared union", benchmark, workload.x_m.size)


def test_peer_per_fix_python_loop(benchmark, workload, prepared_union):
    x = workload.x_m[:LOOP_SAMPLE].tolist()
    y = workload.y_m[:LOOP_SAMPLE].tolist()

    def loop() -> list[bool]:
        return [prepared_union.covers(shapely.Point(a, b)) for a, b in zip(x, y, strict=True)]

    benchmark.pedantic(loop, rounds=3, iterations=1)
    record("peer: per-fix Python loop (prepared)", benchmark, LOOP_SAMPLE)
