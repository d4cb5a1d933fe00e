"""Named variants of CEN: the 11 rows of the paper's Table 7 (Table 1 is a six-row subset).

A variant is four factors. One network class serves them all (pipeline.models.segnet); the
factors only choose shared/unshared weights, which BNs carry γ̂ (ℓ1), and where exchange acts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Variant:
    name: str
    conv: str        # "shared" | "unshared": convolution weights common to all modalities or not
    bn: str          # "private" | "shared": the paper's "Unshared" / "Shared" BNs
    l1: str          # "none" | "half" | "all": ℓ1 on each modality's sub-part γ̂, or on every γ
    exchange: bool   # channel exchanging of Eq. 6 in the same region as ℓ1

    @property
    def uses_lambda(self) -> bool:
        return self.l1 != "none"

    @property
    def uses_theta(self) -> bool:
        return self.exchange

    def factors(self) -> dict:
        d = asdict(self)
        d.pop("name")
        return d


def _v(name, conv, bn, l1, exchange):
    return Variant(name, conv, bn, l1, exchange)


# Table 7 row order. "cen" is the method itself (Table 1 row 5, Table 7 row 7).
TABLE7 = (
    _v("unshared", "unshared", "private", "none", False),
    _v("shared_bn", "shared", "shared", "none", False),
    _v("shared_conv", "shared", "private", "none", False),
    _v("unshared_l1half", "unshared", "private", "half", False),
    _v("unshared_l1half_ex", "unshared", "private", "half", True),
    _v("shared_l1half", "shared", "private", "half", False),
    _v("cen", "shared", "private", "half", True),
    _v("unshared_l1all", "unshared", "private", "all", False),
    _v("unshared_l1all_ex", "unshared", "private", "all", True),
    _v("shared_l1all", "shared", "private", "all", False),
    _v("shared_l1all_ex", "shared", "private", "all", True),
)
VARIANTS = {v.name: v for v in TABLE7}
TABLE1 = ("unshared", "shared_bn", "shared_conv", "shared_l1half", "cen", "shared_l1all_ex")


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; accepted: {', '.join(VARIANTS)}") from None
