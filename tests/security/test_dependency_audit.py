"""The dependency audit's verdict: vulnerabilities fail the build, an unreachable service warns."""

from __future__ import annotations

from tests.security.dependency_audit import verdict

OK = {"name": "httpx", "version": "0.28.1", "vulns": []}
VULNERABLE = {"name": "jinja2", "version": "3.1.2", "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}]}
NOT_ON_PYPI = {"name": "tqdm", "skip_reason": "Dependency not found on PyPI and could not be audited: tqdm (4.70.1)"}


def test_a_known_vulnerability_fails_and_is_named():
    code, message = verdict({"dependencies": [OK, VULNERABLE, NOT_ON_PYPI], "fixes": []})
    assert code == 1 and "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in message


def test_a_clean_environment_passes():
    code, message = verdict({"dependencies": [OK, OK, NOT_ON_PYPI], "fixes": []})
    assert code == 0 and "2 packages checked" in message


def test_an_index_without_the_json_api_warns_instead_of_passing_silently():
    code, message = verdict({"dependencies": [NOT_ON_PYPI] * 9 + [OK], "fixes": []})
    assert code == 0 and message.startswith("WARNING") and "1 of 10" in message


def test_no_network_warns_with_the_cause():
    code, message = verdict(None, "Traceback ...\nrequests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'")
    assert code == 0 and message.startswith("WARNING") and "Failed to resolve" in message
