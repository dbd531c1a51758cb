"""`ticketserve import`: start a help desk's history import in the running service, and follow
it with a progress bar on stderr. The service does the work: Ctrl-C here leaves it running, and
the same command again follows it (or resumes a failed one at its cursor)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import httpx
from tqdm import tqdm

from training.errors import UserError

POLL_S = 0.5
CALL_TIMEOUT_S = 60.0


class ImportClient:
    """The service's import routes for one connector, each error a one-line UserError."""

    def __init__(self, url: str, headers: dict[str, str], connector: str) -> None:
        self.url = url
        self.path = f"{url}/api/v1/connectors/{connector}/import"
        self.headers = headers
        self.connector = connector

    def start(self, since: str, page_size: int) -> dict[str, Any]:
        """The import started (or resumed); an import of this connector already running with
        the same `since` is followed instead."""
        answer, body = self._call("POST", json={"since": since, "page_size": page_size})
        if answer.status_code == 202 and isinstance(body, dict):
            return body
        error = _error(body)
        if answer.status_code == 409 and error.get("code") == "import_running":
            running = self.state()
            if running.get("since") == since:
                return running
        raise UserError(f"{self.url} answered {answer.status_code}: {_message(answer, body)}")

    def state(self) -> dict[str, Any]:
        answer, body = self._call("GET")
        if answer.status_code == 200 and isinstance(body, dict):
            return body
        raise UserError(f"{self.url} answered {answer.status_code}: {_message(answer, body)}")

    def _call(self, method: str, **kwargs: Any) -> tuple[httpx.Response, Any]:
        try:
            answer = httpx.request(
                method, self.path, headers=self.headers, timeout=CALL_TIMEOUT_S, **kwargs
            )
        except httpx.HTTPError as exc:
            raise UserError(
                f"the service at {self.url} does not answer: {exc}; an import it runs goes on "
                "(or resumes when it starts): run the same command to follow it"
            ) from exc
        try:
            return answer, answer.json()
        except ValueError:
            return answer, None


def follow(client: ImportClient, since: str, page_size: int, err: TextIO = sys.stderr) -> dict:
    """Start the import and draw its progress until it ends; its final state. A failed import
    is a UserError saying how to resume it."""
    state = client.start(since, page_size)
    if state.get("resumed"):
        print(
            f"resuming the import at cursor {state.get('cursor')!r} "
            f"({state.get('pages', 0)} page(s) read before)",
            file=err,
        )
    live = err.isatty()
    bar = tqdm(
        desc=f"{client.connector} since {since}",
        unit=" tickets",
        initial=_seen(state),
        file=err,
        mininterval=0.2 if live else 10.0,  # a log file gets a line now and then
        dynamic_ncols=True,
    )
    try:
        while True:
            counts = {k: state[k] for k in ("pages", "imported", "duplicates", "skipped")}
            bar.set_postfix(counts, refresh=live)
            bar.update(_seen(state) - bar.n)
            if state["status"] != "running":
                break
            time.sleep(POLL_S)
            state = client.state()
    finally:
        bar.close()
    if state["status"] == "failed":
        raise UserError(
            f"the import failed: {state.get('error')}; run the same command again to resume it "
            f"at its cursor ({state['pages']} page(s) read, {state['imported']} ticket(s) stored)"
        )
    return state


def _seen(state: dict[str, Any]) -> int:
    return int(state.get("imported", 0) + state.get("duplicates", 0) + state.get("skipped", 0))


def _error(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _message(answer: httpx.Response, body: Any) -> str:
    return str(_error(body).get("message") or answer.text[:300] or answer.reason_phrase)
