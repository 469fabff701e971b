"""Contract harness: the REST ticket simulator in ``quirks`` mode (an outage answered by a
proxy's HTML page with an HTTP-date ``Retry-After``, plain-text 401, a malformed change in the
feed among the good ones)."""

from __future__ import annotations

from typing import ClassVar

from tests.contract.harness_rest import RestHarness


class RestQuirksHarness(RestHarness):
    name: ClassVar[str] = "rest-quirks"
    quirks: ClassVar[bool] = True


HARNESS = RestQuirksHarness
