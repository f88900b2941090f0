"""The CLI's view of the API: a small synchronous client with errors people can read.

Where the API is and which key to use: `FLEET_API_URL` / `FLEET_API_KEY`, else what the
dev stack running on this data directory wrote to `stack.json` and `admin.key`, else the
settings' host and port.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from gigafactory.files import write_private
from gigafactory.settings import Settings

__all__ = [
    "ApiClient",
    "CliError",
    "read_stack_file",
    "resolve_api_key",
    "resolve_api_url",
    "write_stack_file",
]

STACK_FILE = "stack.json"
ADMIN_KEY_FILE = "admin.key"


class CliError(Exception):
    """A failure the CLI reports as one line on stderr, with exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def write_stack_file(settings: Settings, info: dict[str, Any], admin_key: str) -> None:
    """Record where the running dev stack listens, for the CLI in other shells."""
    write_private(settings.data_dir / STACK_FILE, json.dumps(info, indent=2))
    write_private(settings.data_dir / ADMIN_KEY_FILE, admin_key)


def read_stack_file(settings: Settings) -> dict[str, Any]:
    """What the dev stack of this data directory recorded ({} when none ran)."""
    try:
        data = json.loads((settings.data_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_api_url(settings: Settings) -> str:
    if settings.api_url:
        return settings.api_url
    url = read_stack_file(settings).get("apiUrl")
    return str(url) if url else settings.resolved_api_url


def resolve_api_key(settings: Settings) -> str | None:
    if settings.api_key:
        return settings.api_key
    try:
        return (settings.data_dir / ADMIN_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


class ApiClient:
    """Synchronous calls to the API with the CLI's credentials."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30) -> None:
        self.base_url = base_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings, token: str | None = None) -> ApiClient:
        token = token or resolve_api_key(settings)
        if not token:
            raise CliError(
                "no API key: set FLEET_API_KEY (or run `gigafactory dev` with this data "
                "directory, which keeps its admin key there)"
            )
        return cls(resolve_api_url(settings), token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; raise CliError with the API's message on an error status."""
        return self.answer(method, path, **kwargs)[0]

    def answer(self, method: str, path: str, **kwargs: Any) -> tuple[Any, httpx.Headers]:
        """`request`, with the response's headers."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise CliError(
                f"cannot reach the API at {self.base_url} ({err}); is `gigafactory dev` "
                "running, or FLEET_API_URL set?"
            ) from None
        if response.status_code >= 400:
            raise CliError(f"{method} {path}: {response.status_code} {error_message(response)}")
        if response.status_code == 204 or not response.content:
            return None, response.headers
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json(), response.headers
        return response.text, response.headers

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def error_message(response: httpx.Response) -> str:
    """The API's `{"error": {"message"}}`, or the raw body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        field = f" (field {error['field']})" if error.get("field") else ""
        return f"{error['message']}{field}"
    return json.dumps(body)
