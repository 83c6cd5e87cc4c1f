"""Fitting a client's data to a table's column types (the DolphinDB API's ``fitColumnType``)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ShoalError


def fit_table(data, schema: pa.Schema) -> pa.Table:
    """Converts ``data`` (a pandas DataFrame, a pyarrow Table or RecordBatch) to a pyarrow
    Table with exactly ``schema``'s columns and types.

    Columns are matched by name, case-insensitively; every column of the table must be present
    and no other. Integers are narrowed only when every value fits (INT is int32), timestamps
    of any unit or time zone become the table's unit (sub-unit precision is truncated; an aware
    time is taken in UTC), any string type becomes ``string``. Anything else raises
    ``ShoalError`` naming the column.
    """
    if isinstance(data, pd.DataFrame):
        columns = {str(c): data[c] for c in data.columns}
        convert = _from_pandas
    elif isinstance(data, (pa.Table, pa.RecordBatch)):
        columns = {name: data.column(i) for i, name in enumerate(data.schema.names)}
        convert = _from_arrow
    else:
        raise TypeError(f"cannot append a {type(data).__name__}: give a pandas DataFrame or a pyarrow Table")

    by_lower = {}
    for name in columns:
        if name.lower() in by_lower:
            raise ShoalError(f"column `{name}` is given twice (names are case-insensitive)")
        by_lower[name.lower()] = name
    wanted = {f.name.lower() for f in schema}
    extra = [name for name in columns if name.lower() not in wanted]
    if extra:
        raise ShoalError(
            f"the table has no column `{extra[0]}` (columns: {_describe(schema)})"
        )

    arrays, fields = [], []
    for field in schema:
        name = by_lower.get(field.name.lower())
        if name is None:
            raise ShoalError(f"column `{field.name}` ({field.type}) is missing (columns: {_describe(schema)})")
        try:
            array = convert(columns[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise ShoalError(f"column `{field.name}`: cannot convert to Arrow: {e}") from None
        arrays.append(_fit_array(field, array))
        # Nulls in the partition column are refused by the server, naming it.
        fields.append(pa.field(field.name, field.type, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _describe(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name} {f.type}" for f in schema)


def _from_pandas(series: pd.Series):
    return pa.Array.from_pandas(series)


def _from_arrow(column):
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _fit_array(field: pa.Field, array):
    want = field.type
    got = array.type
    if got == want:
        return array
    if pa.types.is_dictionary(got):
        array = array.dictionary_decode()
        got = array.type
    try:
        if pa.types.is_null(got):
            return pa.nulls(len(array), want)
        if pa.types.is_timestamp(want):
            if not (pa.types.is_timestamp(got) or pa.types.is_date(got)):
                raise _mismatch(field, got)
            if pa.types.is_timestamp(got) and got.tz is not None:
                # An aware time: its UTC wall clock.
                array = array.cast(pa.timestamp(got.unit))
            return pc.cast(array, want, safe=False)
        if pa.types.is_date(want):
            if not (pa.types.is_timestamp(got) or pa.types.is_date(got)):
                raise _mismatch(field, got)
            return pc.cast(array, want, safe=False)
        if pa.types.is_integer(want):
            if not pa.types.is_integer(got):
                raise _mismatch(field, got)
            return pc.cast(array, want, safe=True)
        if pa.types.is_floating(want):
            if not (pa.types.is_integer(got) or pa.types.is_floating(got)):
                raise _mismatch(field, got)
            return pc.cast(array, want, safe=False)
        if pa.types.is_string(want) or pa.types.is_large_string(want):
            if not (pa.types.is_string(got) or pa.types.is_large_string(got) or _is_string_view(got)):
                raise _mismatch(field, got)
            return pc.cast(array, want, safe=True)
        if pa.types.is_boolean(want):
            if not pa.types.is_boolean(got):
                raise _mismatch(field, got)
            return array
        return pc.cast(array, want, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ShoalError(f"column `{field.name}` is {want}; cannot fit values of type {got}: {e}") from None


def _is_string_view(t) -> bool:
    is_view = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(is_view and is_view(t))


def _mismatch(field: pa.Field, got) -> ShoalError:
    return ShoalError(f"column `{field.name}` is {field.type}; got values of type {got}")
