"""In-process simulators of the external platforms, for `govbridge demo`, `govbridge simulate`
and the tests. Each follows ../shared/reference exactly (wire formats, errors, paging, limits)."""
