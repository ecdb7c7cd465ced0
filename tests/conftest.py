"""Shared test configuration: Hypothesis profiles and the shared fixtures folder.

Run the deep profile with ``pytest --hypothesis-profile=long``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support import require_fixtures

# Modest by default (CI time); "long" is the deep run, from one documented command.
settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=False,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=100_000,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


@pytest.fixture
def fixtures() -> Path:
    return require_fixtures()
