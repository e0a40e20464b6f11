"""OpenText job status bodies (`resources.opentext.interpret_status`): a final job is delivered exactly
when every delivery's last attempt is `Sent`, failures carry the recipient decoded from `ref_base64`,
and a body of the wrong shape is a clear error, never an AttributeError in the middle of polling."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resources.http import MalformedResponse
from resources.opentext import DeliveryState, interpret_status
from tests.properties.junk import nasty_text, unicode_text

STATES = ["Submitted", "Pending", "InProcess", "Sent", "Error", "Cancelled"]


@st.composite
def deliveries(draw) -> tuple[dict, str, bool]:
    ref = draw(nasty_text | st.just(""))
    attempts = draw(st.lists(st.builds(dict, state=st.sampled_from(STATES) | unicode_text,
                                       gamma_code=st.none() | st.integers(0, 9999)), max_size=3))
    delivery = {"email": draw(unicode_text), "delivery_attempts": attempts}
    if ref:
        delivery["ref_base64"] = base64.b64encode(ref.encode()).decode()
    return delivery, ref, bool(attempts) and attempts[-1]["state"] == "Sent"


@given(job_id=unicode_text.filter(bool), states=st.lists(st.sampled_from(["Complete", "Posted", "Submitted"])
                                                          | unicode_text, max_size=3),
       items=st.lists(deliveries(), max_size=5))
def test_a_status_body_reads_as_the_contract_says(job_id, states, items):
    body = {"job_id": job_id, "job_state": states, "deliveries": [d for d, _, _ in items]}
    status = interpret_status(body, "fallback")
    assert status.job_id == job_id
    if "Complete" not in states:
        assert status.state is DeliveryState.PENDING and not status.failures
        return
    failed = [(ref or None) for _, ref, sent in items if not sent]
    assert status.state is (DeliveryState.FAILED if failed else DeliveryState.DELIVERED)
    assert [f.recipient_id for f in status.failures] == failed


@given(ref=st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()) | st.text(st.characters(max_codepoint=127)))
def test_an_undecodable_reference_is_none_not_a_crash(ref):
    body = {"job_state": ["Complete"], "deliveries": [{"ref_base64": ref, "delivery_attempts": [{"state": "Error"}]}]}
    assert interpret_status(body, "j").state is DeliveryState.FAILED


@pytest.mark.parametrize("body, field", [
    ({"job_state": 5}, "job_state"),
    ({"job_state": ["Complete"], "deliveries": ["x"]}, "deliveries"),
    ({"job_state": ["Complete"], "deliveries": 5}, "deliveries"),
    ({"job_state": ["Complete"], "deliveries": [{"delivery_attempts": "Sent"}]}, "delivery_attempts"),
], ids=["job_state", "delivery", "deliveries", "attempts"])
def test_a_status_of_the_wrong_shape_is_a_malformed_response_naming_the_field(body, field):
    with pytest.raises(MalformedResponse, match=field) as raised:
        interpret_status(body, "j")
    assert "opentext GET" in str(raised.value) and "job j" in str(raised.value)


def test_a_non_ascii_reference_reads_as_no_reference():
    body = {"job_state": ["Complete"], "deliveries": [{"ref_base64": "é", "delivery_attempts": [{"state": "Error"}]}]}
    status = interpret_status(body, "j")
    assert status.state is DeliveryState.FAILED and status.failures[0].recipient_id is None
