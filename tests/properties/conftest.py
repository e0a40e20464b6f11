"""Hypothesis settings for the property tests: no deadlines (no timed assertions on a shared CI
machine) and derandomised, so CI sees the same examples every run. `HYPOTHESIS_PROFILE=explore`
searches further and at random, for a local hunt."""

from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, max_examples=100, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("explore", deadline=None, max_examples=2_000,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")
