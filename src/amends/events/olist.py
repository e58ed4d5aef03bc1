"""The public Olist data set (Brazilian e-commerce, 2016-2018, as Olist publishes it on Kaggle) as amends events,
for evaluating the risk model on a real shop's history (`amends import olist DIR`).

The data is not bundled: DIR holds the CSV files as published. Four are read:

- `olist_orders_dataset.csv`: each order's customer, status and times (purchase, handed to the carrier,
  delivered to the customer, and the estimated delivery date promised at purchase);
- `olist_customers_dataset.csv`: the order's `customer_id` is per order; `customer_unique_id` is the person, who
  is the events' subject, so that a customer's orders are one history;
- `olist_order_items_dataset.csv`: the items of an order, their price and freight (the order's total);
- `olist_order_reviews_dataset.csv`: the review score (1-5) the customer gave the order, and when.

Each order becomes `order.placed` (at purchase, with `order_id`, `total`, `items` and `promised_by`: the estimated
delivery date, the end of that day in São Paulo), `order.shipped` and `order.delivered` when they happened, and
each review `feedback.rated` (at its answer, with `order_id` and `rating`; the comment's words are left out). Times
are São Paulo's local time in the files and UTC in the events. Event ids are stable (`<order_id>/placed`, …), so
importing twice stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from amends.errors import InvalidInput
from amends.events.envelope import EARLIEST, LATEST

__all__ = ["OLIST_FILES", "OLIST_SOURCE", "olist_events"]

OLIST_SOURCE = "https://olist.com"
_ZONE = ZoneInfo("America/Sao_Paulo")
OLIST_FILES: dict[str, tuple[str, ...]] = {
    "olist_orders_dataset.csv": ("order_id", "customer_id", "order_status", "order_purchase_timestamp",
                                 "order_delivered_carrier_date", "order_delivered_customer_date",
                                 "order_estimated_delivery_date"),
    "olist_customers_dataset.csv": ("customer_id", "customer_unique_id"),
    "olist_order_items_dataset.csv": ("order_id", "price", "freight_value"),
    "olist_order_reviews_dataset.csv": ("review_id", "order_id", "review_score", "review_answer_timestamp"),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Tables:
    orders: pl.DataFrame
    reviews: pl.DataFrame


def olist_events(folder: Path, *, progress: Callable[[int], None] | None = None) -> Iterator[dict[str, Any]]:
    """The data set's events, order by order (each order's, then its reviews'). InvalidInput names a missing file
    or column, or a time that cannot be read."""
    tables = _read(folder)
    count = 0
    for row in tables.orders.iter_rows(named=True):
        for event in _order_events(row):
            yield event
            count += 1
    for row in tables.reviews.iter_rows(named=True):
        answered = row["review_answer_timestamp"]
        if answered is None or row["customer_unique_id"] is None or row["review_score"] is None:
            continue
        yield _event(f"{row['review_id']}/{row['order_id']}/rated", "feedback.rated", answered,
                     row["customer_unique_id"], {"order_id": row["order_id"], "rating": int(row["review_score"])},
                     source=f"{OLIST_SOURCE}/reviews")  # fmt: skip
        count += 1
        if progress is not None and count % 10_000 == 0:
            progress(count)


def _read(folder: Path) -> _Tables:
    if not folder.is_dir():
        raise InvalidInput("DIR", f"no such folder: {folder}")
    frames: dict[str, pl.DataFrame] = {}
    for name, columns in OLIST_FILES.items():
        path = folder / name
        if not path.is_file():
            raise InvalidInput("DIR", f"{name} is missing from {folder} (the files as Olist publishes them)")
        try:
            frame = pl.read_csv(path, infer_schema=False, columns=list(columns))
        except pl.exceptions.ColumnNotFoundError as exc:
            missing = [c for c in columns if c not in pl.read_csv(path, n_rows=0, infer_schema=False).columns]
            raise InvalidInput(name, f"has no column {', '.join(missing)}") from exc
        except pl.exceptions.NoDataError as exc:
            raise InvalidInput(name, f"is empty; expected a header naming {', '.join(columns)}") from exc
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InvalidInput(
                name, f"cannot be read as CSV: {(str(exc).strip() or repr(exc)).splitlines()[0]}"
            ) from exc
        frames[name] = frame.with_columns(pl.all().replace("", None))  # an empty field, quoted or not, is none
    orders = frames["olist_orders_dataset.csv"]
    customers = frames["olist_customers_dataset.csv"].unique("customer_id")
    items = _numbers(
        frames["olist_order_items_dataset.csv"], ["price", "freight_value"], "olist_order_items_dataset.csv"
    )
    totals = items.group_by("order_id").agg(
        (pl.col("price").cast(pl.Float64) + pl.col("freight_value").cast(pl.Float64)).sum().round(2).alias("total"),
        pl.len().alias("items"),
    )
    stamp = "%Y-%m-%d %H:%M:%S"
    times = ["order_purchase_timestamp", "order_delivered_carrier_date", "order_delivered_customer_date",
             "order_estimated_delivery_date"]  # fmt: skip
    orders = orders.join(customers, on="customer_id", how="left").join(totals, on="order_id", how="left")
    orders = _times(orders, times, stamp, "olist_orders_dataset.csv").sort("order_purchase_timestamp", "order_id")
    reviews = frames["olist_order_reviews_dataset.csv"].join(
        orders.select("order_id", "customer_unique_id"), on="order_id", how="left"
    )
    reviews = _times(reviews, ["review_answer_timestamp"], stamp, "olist_order_reviews_dataset.csv")
    reviews = reviews.with_columns(pl.col("review_score").cast(pl.Int64, strict=False)).sort(
        "review_answer_timestamp", "review_id", nulls_last=True
    )
    return _Tables(orders, reviews)


def _numbers(frame: pl.DataFrame, columns: list[str], file: str) -> pl.DataFrame:
    """The columns as numbers; InvalidInput names the first value that is not one."""
    out = frame.with_columns(pl.col(c).cast(pl.Float64, strict=False) for c in columns)
    for column in columns:
        unread = frame.filter(pl.col(column).is_not_null() & pl.Series(out[column].is_null()))
        if not unread.is_empty():
            raise InvalidInput(file, f"{column}: {unread[column][0]!r} is not a number like 29.99")
    return out


def _times(frame: pl.DataFrame, columns: list[str], stamp: str, file: str) -> pl.DataFrame:
    out = frame.with_columns(pl.col(c).str.to_datetime(stamp, strict=False) for c in columns)
    # Times outside the years events may have (events.EARLIEST to LATEST) would be refused as events, and near
    # year 1 or 9999 they do not even convert to UTC.
    earliest, latest = EARLIEST.replace(tzinfo=None), LATEST.replace(tzinfo=None) - timedelta(days=2)
    for column in columns:
        unread = frame.filter(pl.col(column).is_not_null() & pl.Series(out[column].is_null()))
        if not unread.is_empty():
            raise InvalidInput(file, f"{column}: {unread[column][0]!r} is not a time like 2017-10-02 10:56:33")
        outside = frame.filter(pl.Series(out[column].is_not_null() & ~out[column].is_between(earliest, latest)))
        if not outside.is_empty():
            raise InvalidInput(
                file, f"{column}: {outside[column][0]!r} is not between {earliest.year} and {latest.year}"
            )
    return out


def _order_events(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    person, order_id, placed = row["customer_unique_id"], row["order_id"], row["order_purchase_timestamp"]
    if person is None or placed is None:
        return
    data: dict[str, Any] = {"order_id": order_id, "status": row["order_status"]}
    if row["total"] is not None:
        data["total"] = row["total"]
        data["items"] = row["items"]
    estimated = row["order_estimated_delivery_date"]
    if estimated is not None:  # the promised day, to its end in São Paulo
        end = datetime.combine(estimated.date(), datetime.min.time()) + timedelta(days=1) - timedelta(seconds=1)
        data["promised_by"] = _utc(end).isoformat().replace("+00:00", "Z")
    yield _event(f"{order_id}/placed", "order.placed", placed, person, data)
    for column, kind in (("order_delivered_carrier_date", "order.shipped"),
                         ("order_delivered_customer_date", "order.delivered")):  # fmt: skip
        at = row[column]
        if at is not None:
            yield _event(f"{order_id}/{kind.split('.')[1]}", kind, at, person, {"order_id": order_id})


def _event(event_id: str, kind: str, local: datetime, subject: str, data: dict[str, Any], *,
           source: str = f"{OLIST_SOURCE}/orders") -> dict[str, Any]:  # fmt: skip
    return {"specversion": "1.0", "id": event_id, "source": source, "type": kind,
            "time": _utc(local).isoformat().replace("+00:00", "Z"), "subject": subject, "data": data}  # fmt: skip


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=_ZONE).astimezone(ZoneInfo("UTC"))
