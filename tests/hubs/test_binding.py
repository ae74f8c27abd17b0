"""Argument binding and result payloads, through a hub connection.

HubProtocol.md, "JSON Encoding" leaves argument types to the server; ASP.NET
Core's binder (System.Text.Json with web defaults) is strict and reads payload
properties case-insensitively, and writes camelCase. A binding failure is an
error Completion ("Failed to invoke 'X' due to an error on the server."), never
a closed connection.
"""

from __future__ import annotations

import datetime
import enum
from typing import Any

import attrs

from tests.support.fakes import connect, make_endpoint
from voisnap.config import Settings
from voisnap.hubs.hub import Hub


@attrs.frozen
class Order:
    item_name: str
    unit_count: int
    rush: bool = False


@attrs.frozen
class Receipt:
    order_id: str
    total_cents: int
    placed_at: datetime.datetime


class Colour(enum.Enum):
    GREEN = "green"
    BLUE = "blue"


class BindingHub(Hub):
    async def raw_bytes(self) -> bytes:
        return b"\x00\x01\xfe"

    async def favourite(self) -> Colour:
        return Colour.GREEN

    async def maybe(self, n: int | None) -> str:
        return "nothing" if n is None else f"got {n}"

    async def square(self, n: int) -> int:
        return n * n

    async def negate(self, flag: bool) -> bool:
        return not flag

    async def half(self, x: float) -> float:
        return x / 2

    async def label(self, text: str, note: str | None) -> str:
        return text if note is None else f"{text} ({note})"

    async def count_items(self, items: list[str]) -> int:
        return len(items)

    async def describe(self, order: Order) -> str:
        return f"{order.unit_count} x {order.item_name}{' (rush)' if order.rush else ''}"

    async def receipt(self, order_id: str) -> Receipt:
        placed = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.UTC)
        return Receipt(order_id=order_id, total_cents=1250, placed_at=placed)

    async def in_an_hour(self, when: datetime.datetime) -> datetime.datetime:
        return when + datetime.timedelta(hours=1)

    async def local_noon(self) -> datetime.datetime:
        plus_two = datetime.timezone(datetime.timedelta(hours=2))
        return datetime.datetime(2024, 1, 1, 12, 0, tzinfo=plus_two)


FAILED = "Failed to invoke '{}' due to an error on the server."


def detailed():
    return make_endpoint(BindingHub, Settings(detailed_errors=True))


async def assert_binding_fails(client: Any, target: str, *args: Any, problem: str) -> None:
    completion = await client.invoke(target, *args)
    assert completion.error is not None, completion
    assert completion.error.startswith(FAILED.format(target)), completion.error
    assert problem in completion.error, completion.error


async def test_binding_string_is_not_int(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Square", "5", problem="expected an integer, got str")
        assert (await client.invoke("Square", 5)).result == 25


async def test_binding_bool_is_not_int(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Square", True, problem="expected an integer, got bool")


async def test_binding_float_is_not_int(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Square", 2.5, problem="expected an integer")


async def test_binding_string_false_is_not_bool(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Negate", "false", problem="expected true or false")
        assert (await client.invoke("Negate", False)).result is True


async def test_binding_one_is_not_bool(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Negate", 1, problem="expected true or false, got int")


async def test_binding_int_is_accepted_as_float(autojump_clock):
    async with connect(detailed()) as client:
        assert (await client.invoke("Half", 3)).result == 1.5
        await assert_binding_fails(client, "Half", "3", problem="expected a number")


async def test_binding_string_is_not_list(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "CountItems", "abc", problem="expected an array")
        await assert_binding_fails(client, "CountItems", ["a", 1], problem="expected a string")
        assert (await client.invoke("CountItems", ["a", "b", "c"])).result == 3


async def test_binding_failure_without_detail_is_generic(autojump_clock):
    async with connect(BindingHub) as client:
        completion = await client.invoke("Square", "5")
        assert completion.error == FAILED.format("Square")


async def test_binding_attrs_parameter_from_camel_case(autojump_clock):
    async with connect(detailed()) as client:
        completion = await client.invoke("Describe", {"itemName": "tea", "unitCount": 2})
        assert completion.result == "2 x tea"


async def test_binding_attrs_parameter_matches_case_insensitively(autojump_clock):
    async with connect(detailed()) as client:
        completion = await client.invoke(
            "Describe", {"ITEMNAME": "tea", "unitcount": 3, "Rush": True}
        )
        assert completion.result == "3 x tea (rush)"


async def test_binding_attrs_parameter_ignores_unknown_keys(autojump_clock):
    async with connect(detailed()) as client:
        completion = await client.invoke(
            "Describe", {"itemName": "tea", "unitCount": 1, "colour": "green", "nested": {}}
        )
        assert completion.result == "1 x tea"


async def test_binding_attrs_parameter_field_types_are_strict(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(
            client, "Describe", {"itemName": "tea", "unitCount": "2"}, problem="expected an integer"
        )
        await assert_binding_fails(client, "Describe", "tea", problem="expected an object")
        await assert_binding_fails(client, "Describe", {"itemName": "tea"}, problem="unitCount")


async def test_binding_attrs_result_is_camel_case(autojump_clock):
    async with connect(BindingHub) as client:
        completion = await client.invoke("Receipt", "o-1")
        assert completion.result == {
            "orderId": "o-1",
            "totalCents": 1250,
            "placedAt": "2024-05-06T07:08:09.123Z",
        }


async def test_binding_datetime_round_trips_as_utc_iso8601(autojump_clock):
    async with connect(detailed()) as client:
        completion = await client.invoke("InAnHour", "2024-01-02T03:04:05Z")
        assert completion.result == "2024-01-02T04:04:05.000Z"
        completion = await client.invoke("InAnHour", "2024-01-02T03:04:05+02:00")
        assert completion.result == "2024-01-02T02:04:05.000Z"


async def test_binding_datetime_result_converted_to_utc(autojump_clock):
    async with connect(BindingHub) as client:
        assert (await client.invoke("LocalNoon")).result == "2024-01-01T10:00:00.000Z"


async def test_binding_datetime_rejects_non_string(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "InAnHour", 1700000000, problem="ISO-8601")


async def test_binding_bytes_result_is_base64(autojump_clock):
    async with connect(BindingHub) as client:
        assert (await client.invoke("RawBytes")).result == "AAH+"


async def test_binding_enum_result_is_its_value(autojump_clock):
    async with connect(BindingHub) as client:
        assert (await client.invoke("Favourite")).result == "green"


async def test_binding_optional_accepts_null_only_besides_type(autojump_clock):
    async with connect(detailed()) as client:
        assert (await client.invoke("Maybe", None)).result == "nothing"
        assert (await client.invoke("Maybe", 3)).result == "got 3"
        await assert_binding_fails(client, "Maybe", "3", problem="got str")


async def test_binding_null_is_not_int(autojump_clock):
    async with connect(detailed()) as client:
        await assert_binding_fails(client, "Square", None, problem="expected an integer")


async def test_binding_naive_datetime_read_as_utc(autojump_clock):
    async with connect(detailed()) as client:
        completion = await client.invoke("InAnHour", "2024-01-02T03:04:05")
        assert completion.result == "2024-01-02T04:04:05.000Z"


async def test_binding_string_with_a_lone_surrogate_or_a_nul_is_refused(autojump_clock):
    """Such a string is JSON, but not Unicode text; PostgreSQL cannot keep a NUL
    (voisnap/protocol/unicode.py). A surrogate pair is one character, and fine."""
    async with connect(detailed()) as client:
        problem = "NUL character or a lone UTF-16 surrogate"
        await assert_binding_fails(client, "Label", "a\ud800b", None, problem=problem)
        await assert_binding_fails(client, "Label", "ok", "\udfff", problem=problem)
        await assert_binding_fails(client, "CountItems", ["fine", "\ud83d"], problem=problem)
        await assert_binding_fails(
            client, "Describe", {"itemName": "\udc00", "unitCount": 1}, problem=problem
        )
        await assert_binding_fails(client, "Label", "nul\x00", None, problem=problem)
        labelled = await client.invoke("Label", "\U0001f600", "\u00e9")
        assert labelled.result == "\U0001f600 (\u00e9)"
