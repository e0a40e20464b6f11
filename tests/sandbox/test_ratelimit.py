"""The sandbox's limiters on a fake clock: windows, Retry-After, and rejected requests not counted."""

from __future__ import annotations

from sandbox.ratelimit import FixedWindows, TokenBucket


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_fixed_windows_refuse_until_the_window_ends_and_rejections_do_not_count():
    clock = Clock()
    limiter = FixedWindows([(2, 10.0), (3, 3600.0)], clock=clock)
    assert [limiter.check("a").allowed for _ in range(3)] == [True, True, False]
    refused = limiter.check("a")
    assert not refused.allowed and refused.retry_after_s == 10 and refused.remaining == 0
    clock.now += 10
    # The hour window has seen 2 accepted calls (the 2 refused did not count): one more fits.
    assert limiter.check("a").allowed and not limiter.check("a").allowed
    hourly = limiter.check("a")
    assert hourly.retry_after_s > 3000  # now the hour window is the one that refuses
    assert limiter.check("b").allowed  # per key


def test_token_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock)
    assert [bucket.check("k").allowed for _ in range(3)] == [True, True, False]
    clock.now += 0.5
    assert bucket.check("k").allowed and not bucket.check("k").allowed
