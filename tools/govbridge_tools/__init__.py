"""Tools around the product, not the product: the platform and ticket-system simulators,
``govbridge demo``, ``govbridge simulate`` and ``govbridge bench``, and a small kit for tests."""
