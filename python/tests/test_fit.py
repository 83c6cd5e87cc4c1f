"""fitColumnType without a cluster: pandas columns fitted to a table's Arrow types."""

import datetime

import pandas as pd
import pyarrow as pa
import pytest

from shoal import ShoalError, fit_table

SEED = pa.schema([("time", pa.timestamp("ms")), ("name", pa.string()), ("id", pa.int32())])


def test_the_seeds_dataframe_fits_the_seeds_table():
    now = datetime.datetime(2023, 1, 2, 3, 4, 5, 678901)
    df = pd.DataFrame({"time": now, "name": ["Apple"], "id": 7})
    t = fit_table(df, SEED)
    assert t.schema.types == SEED.types
    assert t.to_pylist() == [{"time": datetime.datetime(2023, 1, 2, 3, 4, 5, 678000), "name": "Apple", "id": 7}]


def test_nanoseconds_aware_times_names_in_any_case_and_categories_fit():
    df = pd.DataFrame(
        {
            "TIME": pd.to_datetime(["2023-01-02 00:00:00.123456789+01:00"]),
            "Name": pd.Categorical(["Meta"]),
            "id": pd.Series([1], dtype="int64"),
        }
    )
    t = fit_table(df, SEED)
    assert t.column("time").to_pylist() == [datetime.datetime(2023, 1, 1, 23, 0, 0, 123000)]
    assert t.column("name").to_pylist() == ["Meta"]


def test_what_does_not_fit_is_refused_naming_the_column():
    now = datetime.datetime(2023, 1, 2)
    with pytest.raises(ShoalError, match="column `id`.*int32"):
        fit_table(pd.DataFrame({"time": [now], "name": ["a"], "id": [2**31]}), SEED)
    with pytest.raises(ShoalError, match="column `id`"):
        fit_table(pd.DataFrame({"time": [now], "name": ["a"], "id": ["1"]}), SEED)
    with pytest.raises(ShoalError, match="column `time`"):
        fit_table(pd.DataFrame({"time": [1], "name": ["a"], "id": [1]}), SEED)
    with pytest.raises(ShoalError, match="column `name`.*missing"):
        fit_table(pd.DataFrame({"time": [now], "id": [1]}), SEED)
    with pytest.raises(ShoalError, match="no column `price`"):
        fit_table(pd.DataFrame({"time": [now], "name": ["a"], "id": [1], "price": [1.0]}), SEED)
