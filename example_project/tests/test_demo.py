"""The demo page: objects go into the session and come back as objects."""

from __future__ import annotations

from decimal import Decimal

from demo.basket import Basket
from django.test import Client


def test_add_twice_and_read_back() -> None:
    client = Client()
    assert client.get("/").status_code == 200
    client.post("/add/", {"item": "tea"})
    client.post("/add/", {"item": "cup"})
    response = client.get("/")
    assert response.status_code == 200
    basket = response.context["basket"]
    assert isinstance(basket, Basket)
    assert basket.total == Decimal("16.50")
    assert basket.tags == {"tea", "cup"}
    assert b"16.50" in response.content


def test_unknown_item_is_ignored_and_reset_empties() -> None:
    client = Client()
    client.post("/add/", {"item": "nope"})
    assert client.get("/").context["basket"].purchases == []
    client.post("/add/", {"item": "tea"})
    client.post("/reset/")
    assert client.get("/").context["basket"].purchases == []
