"""A token that expires while a call is being retried is renewed, and the call goes through.

Found by the fault run (test_faults.py): the Plytix and PhotoShelter clients remembered the token they
held when a call began, and a 401 renewed it only if it was still that one. A call that began before
the first login (or whose retry carried a newer token) then sent the refused token again and failed.
Here the moment is exact: the first try is answered 503, and tokens expire during the retry's wait.
"""

from __future__ import annotations

from resources.photoshelter import PhotoShelterClient
from resources.plytix import PlytixClient


class ExpireWhileWaiting:
    """A retry wait that expires the service's tokens, as the clock would during a long backoff."""

    def __init__(self, sandbox, service: str):
        self.sandbox, self.service, self.waits = sandbox, service, 0

    def __call__(self, seconds: float) -> None:
        self.waits += 1
        self.sandbox.admin.post("/_sandbox/tokens/expire", json={"service": self.service}).raise_for_status()


def test_plytix_renews_a_token_that_expired_during_a_retry(sandbox):
    sleep = ExpireWhileWaiting(sandbox, "plytix")
    client = PlytixClient(f"{sandbox.url}/plytix-auth", f"{sandbox.url}/plytix", "sandbox-plytix-key",
                          "sandbox-plytix-password", max_requests_per_second=None, sleep=sleep)
    sandbox.fault("plytix", script=["503"])
    reply = client.search_products(page_size=1)  # the client's first call: no token before it began
    assert reply["pagination"]["total_count"] == sandbox.health()["products"]
    assert sleep.waits == 1 and client.token_fetches == 2


def test_photoshelter_renews_a_session_that_expired_during_a_retry(sandbox):
    sleep = ExpireWhileWaiting(sandbox, "photoshelter")
    client = PhotoShelterClient(f"{sandbox.url}/photoshelter", "sandbox-ps-key", "dam@sandbox.example",
                                "sandbox-ps-password", "O0000SANDBOX", max_requests_per_second=None, sleep=sleep)
    sandbox.fault("photoshelter", script=["503"], path_contains="/children")
    assert client.children()["Collection"]
    assert sleep.waits == 1 and client.logins == 2
