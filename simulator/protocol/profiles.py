"""Product profiles: which interfaces a merchant must implement, by product and billing mode.

The vocabulary of docs/protocol.md §1.2 ("Interfaces per product"), as data. A profile is a
product (``saas``, ``saas-kit``, ``license``), a billing mode (``period`` = yearly/monthly,
``one-time``, ``on-demand`` = pay-per-use) and whether the product allows specification changes
(``optional``: the matrix's O rows, upgradeInstance and changeInstanceCheck). It selects exactly
the interfaces the matrix requires; :func:`skip_reason` says, in one sentence naming the profile,
why an interface outside it is not exercised. Readings taken where §1.2 is ambiguous:

- A12: pay-per-use's updateInstanceStatus row is M in [S25], absent in [S27][S11]; koosim takes
  the stricter reading and requires it (§1.2).
- O rows: the matrix marks upgradeInstance/changeInstanceCheck O for yearly/monthly and — for
  one-time and pay-per-use; ``optional`` switches the O rows on (the default, stricter) and
  never turns a — row into a requirement.
- V1 (§1.2, [S46]): yearly/monthly — newInstance, refreshInstance, expireInstance,
  releaseInstance; one-time — newInstance, releaseInstance; pay-per-use — newInstance,
  instanceStatus, releaseInstance; any upgradable product also ``upgrade``. queryInstance is
  no V1 activity of the billing list.
- Kit sync (§7) belongs to joint-operation SaaS (``saas-kit``) only; License interfaces (§6)
  to License products only ([S50][S52]). What else a License product implements is not stated:
  koosim's ``license`` profile requires the License interfaces and none of the SaaS produce
  interface, whatever the billing mode (License products are sold yearly/monthly or one-time
  [S78]; what else they implement is not stated, U24).
- A41: a License product receives its licence by getLicense (§6.1) or getLicenseAsync (§6.2);
  no page says which. ``license_call`` (``--license-call``, default getLicense) declares it, and
  the other is never sent (a false alarm otherwise). getLicenseAsync is a V2 call only.

Pure data: this module imports nothing of the package (``protocol/`` is the bottom layer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PRODUCTS = ("saas", "saas-kit", "license")
"""``--product``: a SaaS product, a joint-operation (联营) SaaS product with the Kit, a License product."""
BILLINGS = ("period", "one-time", "on-demand")
"""``--billing``: yearly/monthly (包周期), one-time (一次性), pay-per-use (按需)."""
BILLING_NAMES = {"period": "yearly/monthly", "one-time": "one-time", "on-demand": "pay-per-use"}
DEFAULT_PRODUCT, DEFAULT_BILLING, DEFAULT_OPTIONAL = "saas", "period", True
LICENSE_OPENINGS = ("getLicense", "getLicenseAsync")
"""``--license-call``: how a License product receives its licence (docs/protocol.md §6.1 / §6.2).
Which products receive which is not stated (A41): the product declares it, koosim never guesses."""
DEFAULT_LICENSE_CALL = "getLicense"

KIT = "kit"
"""The interface name a check uses for the Kit user-authorisation sync calls (§7)."""
LICENSE = "license"
"""The interface name a check uses for the License interfaces (§6)."""
USAGE_PUSH = "usagePush"
"""The interface name a check uses for usage push (§8.3), which pay-per-use SaaS products must
call, V2 [S2][S3][S27] and V1 [S46] alike (§1.2)."""
SYNC_CALLS = frozenset({"tenantSync", "applicationSync", "authSync", "singleOrgSync", "allOrgSync"})
LICENSE_INTERFACES = frozenset(
    {"getLicense", "refreshLicense", "expireLicense", "releaseLicense", "getLicenseAsync"}
)
OPTIONAL_V2 = frozenset({"upgradeInstance", "changeInstanceCheck"})
"""The matrix's O rows: only for products that allow specification changes (§1.2, §4.3, §4.7)."""

# §1.2, V2.0 SaaS produce interface [S25]: M rows per billing mode, then the O rows.
V2_REQUIRED = {
    "one-time": frozenset({"newInstance", "queryInstance", "releaseInstance"}),
    "period": frozenset(
        {"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"}
    ),
    "on-demand": frozenset(
        {"newInstance", "queryInstance", "refreshInstance", "updateInstanceStatus", "releaseInstance"}
    ),
}
V2_OPTIONAL = {"one-time": frozenset[str](), "period": OPTIONAL_V2, "on-demand": frozenset[str]()}
# §1.2, V1 products by billing mode [S46]; "any upgradable product — also upgrade".
V1_REQUIRED = {
    "one-time": frozenset({"newInstance", "releaseInstance"}),
    "period": frozenset({"newInstance", "refreshInstance", "expireInstance", "releaseInstance"}),
    "on-demand": frozenset({"newInstance", "instanceStatus", "releaseInstance"}),
}
V1_OPTIONAL = frozenset({"upgrade"})

V1_ACTIVITIES = frozenset().union(*V1_REQUIRED.values(), V1_OPTIONAL)
"""The V1 activities §5.1 lists (no V1 queryInstance, updateInstanceStatus, changeInstanceCheck)."""
SAAS_PRODUCE = frozenset().union(
    *V2_REQUIRED.values(), *V1_REQUIRED.values(), OPTIONAL_V2, V1_OPTIONAL
) | frozenset({"queryInstance", "updateInstanceStatus", "expireInstance", "instanceStatus"})
"""Every SaaS produce activity of either generation the matrix names."""
KNOWN_INTERFACES = SAAS_PRODUCE | LICENSE_INTERFACES | SYNC_CALLS | {KIT, LICENSE, USAGE_PUSH}
"""The names a profile decides about; any other name (a probe's unknown activity) always applies."""


def parse_product(value: object) -> str:
    if value not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(PRODUCTS)}, not {value!r}")
    return str(value)


def parse_billing(value: object) -> str:
    if value not in BILLINGS:
        raise ValueError(f"billing must be one of {', '.join(BILLINGS)}, not {value!r}")
    return str(value)


def parse_license_call(value: object) -> str:
    if value not in LICENSE_OPENINGS:
        raise ValueError(f"license_call must be one of {', '.join(LICENSE_OPENINGS)}, not {value!r}")
    return str(value)


def parse_optional(value: object) -> bool:
    """A boolean: true/false (toml, JSON), or on/off, yes/no, 1/0 (environment, forms)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "on", "yes", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "off", "no", "0"):
        return False
    raise ValueError(f"optional must be true or false, not {value!r}")


@dataclass(frozen=True)
class Profile:
    """What kind of product the merchant sells: it decides which interfaces koosim exercises."""

    product: str = DEFAULT_PRODUCT
    billing: str = DEFAULT_BILLING
    optional: bool = DEFAULT_OPTIONAL
    """Whether the product allows specification changes (the matrix's O rows)."""
    license_call: str = DEFAULT_LICENSE_CALL
    """How a License product receives its licence: ``getLicense`` (§6.1) or ``getLicenseAsync``
    (§6.2). Which one a product receives is not stated (A41): the other is never sent to it."""

    def __post_init__(self) -> None:
        parse_product(self.product)
        parse_billing(self.billing)
        parse_license_call(self.license_call)
        if not isinstance(self.optional, bool):
            raise ValueError(f"optional must be true or false, not {self.optional!r}")

    def __str__(self) -> str:
        changes = "" if self.optional else ", no specification changes"
        opening = ""
        if self.product == "license" and self.license_call != DEFAULT_LICENSE_CALL:
            opening = f", licence by {self.license_call}"
        return f"{self.product} {BILLING_NAMES[self.billing]}{changes}{opening}"

    @property
    def is_saas(self) -> bool:
        return self.product in ("saas", "saas-kit")

    def interfaces(self, protocol: str = "v2") -> frozenset[str]:
        """Exactly the interfaces §1.2 requires of this profile on ``protocol`` (v2 or v1)."""
        if self.product == "license":
            unsent = set(LICENSE_OPENINGS) - {self.license_call}
            return (LICENSE_INTERFACES - unsent) | {LICENSE}
        if protocol == "v1":
            chosen = V1_REQUIRED[self.billing] | (V1_OPTIONAL if self.optional else frozenset())
        else:
            chosen = V2_REQUIRED[self.billing] | (V2_OPTIONAL[self.billing] if self.optional else frozenset())
        if self.product == "saas-kit":
            chosen |= SYNC_CALLS | {KIT}
        if self.billing == "on-demand":
            chosen |= {USAGE_PUSH}
        return chosen

    def requires(self, interface: str, protocol: str = "v2") -> bool:
        return self.skip_reason((interface,), protocol) is None

    def skip_reason(self, needs: Iterable[str], protocol: str = "v2") -> str | None:
        """Why something needing the interfaces ``needs`` does not apply to this profile (None:
        it applies). The reason names the interface, the profile and the section."""
        for interface in sorted(set(needs)):
            reason = self._reason(interface, protocol)
            if reason is not None:
                return reason
        return None

    def _reason(self, interface: str, protocol: str) -> str | None:
        if interface not in KNOWN_INTERFACES:  # an unknown activity is a probe, not an interface
            return None
        if interface in (KIT, *SYNC_CALLS):
            if self.product == "saas-kit":
                return None
            return (
                f"Kit sync interfaces: not a joint-operation SaaS product "
                f"(--product saas-kit; profile {self}, §1.2)"
            )
        if interface in (LICENSE, *LICENSE_INTERFACES):
            if self.product == "license":
                if interface in LICENSE_OPENINGS and interface != self.license_call:
                    return (
                        f"{interface}: the product receives its licence by {self.license_call} "
                        f"(--license-call; profile {self}, §1.2, A41)"
                    )
                if interface == "getLicenseAsync" and protocol == "v1":
                    return f"getLicenseAsync: a V2 call only (§6.2; profile {self}, §1.2)"
                return None
            return f"License interfaces: not a License product (--product license; profile {self}, §1.2)"
        if self.product == "license":
            return f"{interface}: not an interface of a License product (profile {self}, §1.2)"
        if interface == USAGE_PUSH:
            if self.billing == "on-demand":
                return None
            return f"usage push: pay-per-use products only (--billing on-demand; profile {self}, §1.2)"
        name = interface
        if protocol == "v1" and interface == "upgradeInstance":
            name = "upgrade"
        elif protocol != "v1" and interface == "upgrade":
            name = "upgradeInstance"
        if name in self.interfaces(protocol):
            return None
        if protocol == "v1" and name not in V1_ACTIVITIES:
            return f"{name}: not a V1 activity (§5.1, U21; profile {self})"
        if not self.optional and (
            (protocol == "v1" and name in V1_OPTIONAL) or (name in V2_OPTIONAL[self.billing])
        ):
            return (
                f"{name}: the product allows no specification changes (--no-optional; profile {self}, §1.2)"
            )
        return f"{name}: not required for {BILLING_NAMES[self.billing]} products (profile {self}, §1.2)"


DEFAULT_PROFILE = Profile()
