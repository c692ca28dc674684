"""Every action is a form: a bad quantity or an unknown product is a form error, not a crash."""

from __future__ import annotations

from typing import Any

from django import forms

from shop.cart import MAX_QUANTITY
from shop.models import Coupon, Product


class AddToCartForm(forms.Form):
    product = forms.ModelChoiceField(
        queryset=Product.objects.filter(active=True),
        widget=forms.HiddenInput,
        error_messages={
            "required": "Choose a product.",
            "invalid_choice": "This product is not in the catalog.",
        },
    )
    quantity = forms.IntegerField(min_value=1, max_value=MAX_QUANTITY, initial=1)


class LineForm(forms.Form):
    """Names a line of the cart; the views check it is there."""

    product = forms.IntegerField(min_value=1)


class UpdateLineForm(LineForm):
    quantity = forms.IntegerField(min_value=0, max_value=MAX_QUANTITY)


class CouponForm(forms.Form):
    code = forms.CharField(max_length=32, label="Coupon code")

    def __init__(self, *args: Any, applied: set[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applied = applied or set()
        self.coupon: Coupon | None = None

    def clean_code(self) -> str:
        code: str = self.cleaned_data["code"].strip().upper()
        if code in self.applied:
            raise forms.ValidationError("This coupon is already applied.")
        self.coupon = Coupon.objects.filter(code=code, active=True).first()
        if self.coupon is None:
            raise forms.ValidationError("Unknown coupon code.")
        if self.coupon.kind == Coupon.Kind.PERCENT:
            # Percentages do not stack: 10 % and 25 % off must not make 35 % off.
            other = Coupon.objects.filter(
                code__in=self.applied, kind=Coupon.Kind.PERCENT, active=True
            ).first()
            if other is not None:
                raise forms.ValidationError(
                    f"Only one percentage coupon per order: remove {other.code} first to use "
                    f"{code}."
                )
        return code


class CheckoutForm(forms.Form):
    name = forms.CharField(max_length=100)
    email = forms.EmailField()
