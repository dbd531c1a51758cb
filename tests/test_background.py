"""The `Background` traffic helper: a test that relies on it must fail when a request fails."""

from __future__ import annotations

import pytest
import requests
from api_service import Background


def answer(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


def test_a_request_that_raises_fails_the_check() -> None:
    def request(call: int) -> requests.Response:
        if call == 2:
            raise requests.ConnectionError("connection reset by peer")
        return answer(200)

    with Background(request, pause_s=0.01) as traffic:
        traffic.wait_for(5, timeout=10)
    with pytest.raises(AssertionError, match="call 2: ConnectionError: connection reset"):
        traffic.check()


def test_an_unexpected_status_fails_the_check_and_silence_too() -> None:
    with Background(lambda call: answer(503 if call == 1 else 201), expected=201) as traffic:
        traffic.wait_for(3, timeout=10)
    with pytest.raises(AssertionError, match="call 1: 503"):
        traffic.check()
    with Background(lambda call: answer(200), pause_s=10) as idle:
        pass  # the block ended before a second call
    with pytest.raises(AssertionError, match=r"only [01] calls during the block"):
        idle.check(minimum=2)
    with Background(lambda call: answer(200)) as busy:
        busy.wait_for(3, timeout=10)
    busy.check(minimum=3)
