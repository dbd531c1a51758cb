"""HTTP clients of TorchServe's inference and management APIs (httpx; sync and asyncio).

    client = TorchServeClient(inference_url, management_url, timeout=30.0, keys=None)
      .predict(model, body, content_type="application/json", version=None) -> httpx.Response
          never raises for an HTTP status: a 400 carries the handler's message for the client
      .register(mar_file_name, initial_workers=1) -> dict   (version comes from the MANIFEST)
      .wait_ready(model, version=None, timeout=120.0) -> dict   (the described version)
      .set_default(model, version) -> dict
      .unregister(model, version=None) -> dict
      .describe(model, version=None) -> list[dict]   (version="all": every version)
      .list_models() -> list[dict]
      .ping() -> bool
    AsyncTorchServeClient: `predict` and `ping` as coroutines (and `aclose`), the calls the
    request path makes; management runs on the sync client, off the event loop.

Management errors raise TorchServeError(status, message) with TorchServe's own message;
`TorchServeError.from_response(resp)` does the same for a predict answer. TorchServe's token
authorization is on: pass `keys=KeyFile(<workdir>/key_file.json)`; every request then carries the
key TorchServe wrote at its latest start.

Each call is written once, as a generator of HTTP requests (and pauses) that receives their
responses; `TorchServeClient` runs it with httpx.Client, `AsyncTorchServeClient` with
httpx.AsyncClient, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

READY = "READY"


class TorchServeError(RuntimeError):
    """TorchServe answered with an error status; `message` is TorchServe's (or the handler's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"TorchServe {status}: {message}")
        self.status = status
        self.message = message

    @classmethod
    def from_response(cls, response: httpx.Response) -> TorchServeError:
        try:
            message = str(response.json().get("message") or response.text)
        except (ValueError, AttributeError):
            message = response.text.strip() or response.reason_phrase
        return cls(response.status_code, message)


def has_ready_worker(description: dict[str, Any]) -> bool:
    """Whether a model version's description (GET /models/<name>) lists a READY worker."""
    return any(w.get("status") == READY for w in description.get("workers", []))


class KeyFile:
    """TorchServe's key_file.json (token authorization), re-read whenever it changes.

    TorchServe writes new keys, readable by its owner only, at every start; a client holding a
    KeyFile follows them across restarts without being told.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, str] = {}

    def key(self, api: Literal["inference", "management"]) -> str | None:
        """The current key of one API; None while TorchServe has not written the file."""
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return None
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    apis = ("inference", "management")
                    self._keys = {api: str(data[api]["key"]) for api in apis}
                except (OSError, ValueError, KeyError, TypeError):
                    return None  # half-written: the next call reads it again
                self._stamp = (stat.st_mtime_ns, stat.st_size)
            return self._keys.get(api)

    def headers(self, api: Literal["inference", "management"]) -> dict[str, str]:
        key = self.key(api)
        return {"Authorization": f"Bearer {key}"} if key else {}


@dataclass(frozen=True)
class _Pause:
    """A step of a call: wait this long before the next request."""

    seconds: float


# A call yields requests (httpx.request keyword arguments) or pauses, receives each request's
# response, and returns its result.
Call = Generator["dict[str, Any] | _Pause", "httpx.Response | None", Any]


def _json_or_raise(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise TorchServeError.from_response(response)
    return response.json()


class _Calls:
    """The calls both clients make, free of I/O."""

    def __init__(
        self, inference_url: str, management_url: str, timeout: float, keys: KeyFile | None
    ) -> None:
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.keys = keys
        # Registering unpacks the archive and starts a worker: far slower than a prediction.
        self.slow = httpx.Timeout(max(timeout, 300.0))

    def _headers(self, api: Literal["inference", "management"]) -> dict[str, str]:
        return self.keys.headers(api) if self.keys is not None else {}

    def _management(
        self, method: str, path: str, params: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        return {
            "method": method,
            "url": self.management_url + path,
            "params": params,
            "headers": self._headers("management"),
            **extra,
        }

    def predict(self, model: str, body: Any, content_type: str, version: str | None) -> Call:
        if isinstance(body, dict | list):
            body = json.dumps(body, ensure_ascii=False)
        content = body.encode("utf-8") if isinstance(body, str) else body
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        headers = {**self._headers("inference"), "Content-Type": content_type}
        url = self.inference_url + path
        return (yield {"method": "POST", "url": url, "content": content, "headers": headers})

    def register(self, mar_file_name: str, initial_workers: int) -> Call:
        params = {"url": mar_file_name, "initial_workers": initial_workers, "synchronous": "true"}
        return _json_or_raise(
            (yield self._management("POST", "/models", params, timeout=self.slow))
        )

    def describe(self, model: str, version: str | None) -> Call:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return _json_or_raise((yield self._management("GET", path)))

    def wait_ready(self, model: str, version: str | None, timeout: float) -> Call:
        deadline = time.monotonic() + timeout
        while True:
            description = (yield from self.describe(model, version))[0]
            if has_ready_worker(description):
                return description
            if time.monotonic() > deadline:
                raise TorchServeError(503, f"{model} has no READY worker after {timeout:.0f}s")
            yield _Pause(0.25)

    def set_default(self, model: str, version: str) -> Call:
        return _json_or_raise(
            (yield self._management("PUT", f"/models/{model}/{version}/set-default"))
        )

    def unregister(self, model: str, version: str | None) -> Call:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return _json_or_raise((yield self._management("DELETE", path, timeout=self.slow)))

    def list_models(self) -> Call:
        models, token = [], None
        while True:
            params = {"limit": 100, **({"next_page_token": token} if token else {})}
            page = _json_or_raise((yield self._management("GET", "/models", params)))
            models += page.get("models", [])
            token = page.get("nextPageToken")
            if not token:
                return models

    def ping(self) -> Call:
        url = self.inference_url + "/ping"
        try:
            response = yield {"method": "GET", "url": url, "headers": self._headers("inference")}
        except httpx.TransportError:
            return False
        return response.status_code == 200


class TorchServeClient:
    """Synchronous client of TorchServe's inference and management APIs."""

    def __init__(
        self,
        inference_url: str,
        management_url: str,
        timeout: float = 30.0,
        keys: KeyFile | None = None,
    ) -> None:
        self._calls = _Calls(inference_url, management_url, timeout, keys)
        self._http = httpx.Client(timeout=timeout)

    def __enter__(self) -> TorchServeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call) -> Any:
        try:
            step = next(call)
            while True:
                if isinstance(step, _Pause):
                    time.sleep(step.seconds)
                    step = call.send(None)
                    continue
                try:
                    response = self._http.request(**step)
                except httpx.TransportError as exc:
                    step = call.throw(exc)
                else:
                    step = call.send(response)
        except StopIteration as done:
            return done.value

    def predict(
        self,
        model: str,
        body: Any,
        content_type: str = "application/json",
        version: str | None = None,
    ) -> httpx.Response:
        """POST one request body (dict/list as JSON, str, bytes) to /predictions/<model>."""
        return self._run(self._calls.predict(model, body, content_type, version))

    def register(self, mar_file_name: str, initial_workers: int = 1) -> dict[str, Any]:
        """Register an archive of the model store; returns once its workers have started."""
        return self._run(self._calls.register(mar_file_name, initial_workers))

    def wait_ready(
        self, model: str, version: str | None = None, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll until the version (default: the default version) has a READY worker."""
        return self._run(self._calls.wait_ready(model, version, timeout))

    def set_default(self, model: str, version: str) -> dict[str, Any]:
        return self._run(self._calls.set_default(model, version))

    def unregister(self, model: str, version: str | None = None) -> dict[str, Any]:
        return self._run(self._calls.unregister(model, version))

    def describe(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        return self._run(self._calls.describe(model, version))

    def list_models(self) -> list[dict[str, Any]]:
        return self._run(self._calls.list_models())

    def ping(self) -> bool:
        return self._run(self._calls.ping())


class AsyncTorchServeClient:
    """The same client for asyncio code (the /api/v1 service's request handlers)."""

    def __init__(
        self,
        inference_url: str,
        management_url: str,
        timeout: float = 30.0,
        keys: KeyFile | None = None,
    ) -> None:
        self._calls = _Calls(inference_url, management_url, timeout, keys)
        self._http = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncTorchServeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call) -> Any:
        try:
            step = next(call)
            while True:
                if isinstance(step, _Pause):
                    await asyncio.sleep(step.seconds)
                    step = call.send(None)
                    continue
                try:
                    response = await self._http.request(**step)
                except httpx.TransportError as exc:
                    step = call.throw(exc)
                else:
                    step = call.send(response)
        except StopIteration as done:
            return done.value

    async def predict(
        self,
        model: str,
        body: Any,
        content_type: str = "application/json",
        version: str | None = None,
    ) -> httpx.Response:
        return await self._run(self._calls.predict(model, body, content_type, version))

    async def ping(self) -> bool:
        return await self._run(self._calls.ping())
