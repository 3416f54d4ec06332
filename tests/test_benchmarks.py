"""benchmarks/run.py: the run's time as a ratio to the raw encode time of its own texts."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from staffml_dagster.generation.backend import CellRequest
from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.quality.criteria import distinct_text
from staffml_dagster.storage import write_parquet_atomic

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratio_to_raw_encode(bench):
    out = bench.over_raw_encode(run_seconds=300.0, texts=1200, encode_seconds=40.0)
    assert out == {
        "run_texts": 1200,
        "run_texts_raw_encode_s": 40.0,
        "run_texts_raw_texts_per_s": 30.0,
        "full_materialization_over_raw_encode": 7.5,
    }
    with pytest.raises(ValueError, match="did the run write any question"):
        bench.over_raw_encode(run_seconds=300.0, texts=0, encode_seconds=0.0)


def test_run_texts_are_the_texts_the_run_embedded(bench, specs, tmp_path):
    rows = ItemModelGenerator().generate(specs, CellRequest("kv-cache-management", "cloud", "quantify", "L3", 3, 1))
    df = pd.DataFrame(rows)
    write_parquet_atomic(
        df.drop(columns=["topic", "track"]),
        tmp_path / "questions" / "topic=kv-cache-management" / "track=cloud" / "part.parquet",
    )
    texts = bench.run_texts(tmp_path)
    assert sorted(texts) == sorted(distinct_text(r) for r in rows) and len(texts) == len(rows) > 0
