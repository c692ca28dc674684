"""The objects the demo keeps in the session, as they are: no conversion to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass
class Purchase:
    name: str
    price: Decimal
    bought_at: datetime


@dataclass
class Basket:
    purchases: list[Purchase] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)

    @property
    def total(self) -> Decimal:
        return sum((p.price for p in self.purchases), Decimal("0.00"))
