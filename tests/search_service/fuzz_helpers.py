"""The fuzz framework of test_service_fuzz.py: inputs, how they are sent, and read-back checks.

Bodies are sent as raw bytes of ``json.dumps(..., ensure_ascii=True)``, which writes a lone
surrogate as the escape ``\\ud800`` (httpx's own JSON encoding refuses them); :class:`Raw` splices
JSON text that Python cannot produce (5000-digit integers, ``1e400``) into a body. A sweep collects
every failing input in :class:`Findings` and reports them together, grouped by the server's
exception.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from supernet import get_space

SPACE = "ufo-track2"
TASKS = list(get_space(SPACE).tasks)
TASK = TASKS[0]
_SPACE = get_space(SPACE)
ARCHS = [_SPACE.format(s) for s in _SPACE.sample(48, 7)]
ARCH = ARCHS[0]
DEVICE = "dev1"
PROFILER = "torch-cpu"
INT32 = 2**31 - 1
MODES = ["admin", "anonymous", "auth-off"]

# Lone surrogates, NUL and friends: what every string field, key, path and query value gets.
NASTY_STRINGS = ["\ud800", "\udfff", "\x00", "a\x00b", "\udfff\ud800", "x\ud800y", "\ud800\x00"]


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings of these tests: reproducible (derandomized, no example database), with
    neither deadlines nor health checks."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# ------------------------------------------------------------------------------------ encoding


@dataclass(frozen=True)
class Raw:
    """JSON text spliced into a body as is (numbers that Python's json cannot write)."""

    text: str

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 24 else f"{self.text[:12]}...({len(self.text)} chars)"
        return f"Raw({shown!r})"


def encode(value: Any) -> bytes:
    """``value`` as JSON bytes: lone surrogates escaped (``\\ud800``), :class:`Raw` spliced in."""
    raws: dict[str, str] = {}

    def placeholder(item: Any) -> str:  # json.dumps calls it for what it cannot write: Raw
        if not isinstance(item, Raw):
            raise TypeError(f"not JSON: {item!r}")
        key = f"\x01raw{len(raws)}\x01"
        raws[key] = item.text
        return key

    out = json.dumps(value, ensure_ascii=True, allow_nan=False, default=placeholder)
    for key, raw in raws.items():
        out = out.replace(json.dumps(key), raw)
    return out.encode()


def canon(value: Any) -> str:
    """A JSON value's text with sorted keys: equal iff the values are the same JSON."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=False)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values: numbers by value (``1e16`` is ``10000000000000000``, ``1.0`` is ``1``,
    ``-0.0`` is ``0``), booleans only equal booleans, objects regardless of key order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, float) or isinstance(b, float):
            try:
                return float(a) == float(b)
            except OverflowError:
                return False
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return type(a) is type(b) and a == b


def json_round_trip(value: Any) -> Any:
    return json.loads(encode(value))


def quote(value: str | bytes) -> str:
    """Percent-encode a path or query value; lone surrogates as their (WTF-8) UTF-8 bytes."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return urllib.parse.quote(raw, safe="")


def excerpt(content: bytes | None, limit: int = 160) -> str:
    if content is None:
        return ""
    shown = content[:limit].decode("ascii", "backslashreplace")
    return shown + (f"...({len(content)} bytes)" if len(content) > limit else "")


def nested_text(depth: int, kind: str, leaf: str = "1") -> str:
    """JSON text of ``leaf`` inside ``depth`` lists, single-key objects or both alternating."""
    opens, closes = [], []
    for level in range(depth):
        as_list = kind == "list" or (kind == "mixed" and level % 2 == 0)
        opens.append("[" if as_list else '{"a":')
        closes.append("]" if as_list else "}")
    return "".join(opens) + leaf + "".join(reversed(closes))


def nest(value: Any, kinds: list[str]) -> Any:
    for kind in reversed(kinds):
        value = [value] if kind == "list" else {"k": value}
    return value


# ------------------------------------------------------------------------------------ requests


def _frame(entry: traceback.FrameSummary) -> str:
    path = entry.filename
    for marker in ("/site-packages/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{entry.lineno} {entry.name}"


def exception_summary(error: BaseException) -> tuple[str, str]:
    """(``Type at innermost frame <- innermost project frame``, the message): the first names the
    failure class, the second differs between inputs of one class."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if "site-packages" not in f.filename and "/tests/" not in f.filename]
    where = [_frame(f) for f in (own[-1:] + frames[-1:])] if frames else []
    message = str(error).replace("\n", " ")[:220]
    return f"{type(error).__name__} [at {' <- '.join(dict.fromkeys(reversed(where)))}]", message


def request(
    client: TestClient,
    method: str,
    url: str,
    body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send ``body`` (encoded with :func:`encode`) or raw ``content``; fail on a 5xx.

    Exceptions of the app propagate (TestClient re-raises them), with their traceback.
    """
    if content is None and body is not None:
        content = encode(body)
    sent = dict(headers or {})
    if content is not None:
        sent["content-type"] = "application/json"
    response = client.request(method, url, content=content, headers=sent)
    assert response.status_code < 500, (
        f"{method} {url} {excerpt(content)} -> {response.status_code} {response.text[:300]}"
    )
    return response


def get_json(client: TestClient, url: str, headers: dict[str, str]) -> Any:
    """GET ``url``, which must answer 200 with JSON."""
    response = request(client, "GET", url, headers=headers)
    assert response.status_code == 200, f"GET {url} -> {response.status_code} {response.text[:500]}"
    return response.json()


class Findings:
    """Every problem of a sweep, reported at the end grouped by cause."""

    def __init__(self) -> None:
        self.by_cause: dict[str, list[str]] = {}
        self.messages: dict[str, str] = {}

    def add(self, cause: str | tuple[str, str], what: str) -> None:
        """Record input ``what`` under ``cause`` (or a (cause, message) pair: first message kept)."""
        if isinstance(cause, tuple):
            cause, message = cause
            self.messages.setdefault(cause, message)
        self.by_cause.setdefault(cause, []).append(what)

    def send(
        self,
        client: TestClient,
        method: str,
        url: str,
        body: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        label: str = "",
    ) -> httpx.Response | None:
        """The response, or None after recording a 5xx or an exception of the app."""
        if content is None and body is not None:
            content = encode(body)
        what = f"{label} {method} {url} {excerpt(content)}".strip()
        sent = dict(headers or {})
        if content is not None:
            sent["content-type"] = "application/json"
        try:
            response = client.request(method, url, content=content, headers=sent)
        except Exception as error:  # the app's own exception, re-raised by TestClient
            self.add(exception_summary(error), what)
            return None
        if response.status_code >= 500:
            self.add(f"HTTP {response.status_code} {response.text[:200]}", what)
            return None
        return response

    def get_json(self, client: TestClient, url: str, headers: dict[str, str], label: str) -> Any:
        response = self.send(client, "GET", url, headers=headers, label=label)
        if response is None:
            return None
        if response.status_code != 200:
            self.add(
                f"read-back GET answered {response.status_code}", f"{label} GET {url}: {response.text[:200]}"
            )
            return None
        try:
            return response.json()
        except (ValueError, RecursionError) as error:
            self.add(f"read-back GET is not JSON: {type(error).__name__}", f"{label} GET {url}")
            return None

    def check(self) -> None:
        if not self.by_cause:
            return
        lines = [f"{sum(map(len, self.by_cause.values()))} failing inputs, {len(self.by_cause)} causes:"]
        for cause, whats in self.by_cause.items():
            lines.append(f"* {cause} ({len(whats)} inputs), e.g.:")
            if cause in self.messages:
                lines.append(f"    first message: {self.messages[cause]}")
            lines.extend(f"    {w}" for w in whats[:6])
        pytest.fail("\n".join(lines), pytrace=False)


# ----------------------------------------------------------------------------- the service


@dataclass
class Service:
    """The apps of one backend (auth on and off) and the admin token of the current test."""

    url: str
    dialect: str
    auth_client: TestClient
    open_client: TestClient
    admin: dict[str, str] = field(default_factory=dict)
    job_id: int = 0
    campaign_id: int = 0

    def client(self, mode: str) -> TestClient:
        return self.open_client if mode == "auth-off" else self.auth_client

    def headers(self, mode: str) -> dict[str, str]:
        return dict(self.admin) if mode == "admin" else {}


# ----------------------------------------------------------------------------- request bodies


def measurement_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "fz-" + uuid.uuid4().hex[:12],
        "space": SPACE,
        "arch": ARCH,
        "device": DEVICE,
        "task": None,
        "metric": "latency_ms",
        "value": 1.5,
        "std": 0.01,
        "repeats": 3,
        "profiler": PROFILER,
        "profiler_version": "1.0",
        "environment": {"host": "h", "libs": {"torch": ["2.0", 1]}},
        "drift": 0.01,
        "flagged": False,
        "measured_at": "2024-01-01T00:00:00Z",
    }
    item.update(overrides)
    return item


# Bodies of the routes this file knows, valid as they stand (keyed by the OpenAPI path).
TEMPLATES: dict[tuple[str, str], Callable[[], Any]] = {
    ("POST", "/v1/devices"): lambda: {
        "name": "fz-dev",
        "profiler": PROFILER,
        "settings": {"batch_size": 1, "task": TASK},
    },
    ("POST", "/v1/measurements"): lambda: {"measurements": [measurement_item()]},
    ("POST", "/v1/query"): lambda: {
        "space": SPACE,
        "task": TASK,
        "device": DEVICE,
        "latency_budget_ms": 10.0,
        "confidence": 0.9,
    },
    ("POST", "/v1/campaigns"): lambda: {
        "space": SPACE,
        "device": DEVICE,
        "task": None,
        "n": 1,
        "strategy": "random",
        "seed": 1,
        "candidates": [ARCH],
    },
    ("POST", "/v1/jobs/lease"): lambda: {"device": DEVICE, "lease_seconds": 60, "count": 1},
    ("POST", "/v1/jobs/{job_id}/heartbeat"): lambda: {"lease_token": "tok", "lease_seconds": 60},
    ("POST", "/v1/jobs/{job_id}/result"): lambda: {
        "lease_token": "tok",
        "value": 1.5,
        "std": 0.01,
        "repeats": 3,
        "profiler": PROFILER,
        "profiler_version": "1.0",
        "environment": {"host": "h", "libs": {"torch": ["2.0", 1]}},
        "drift": 0.0,
        "flagged": False,
    },
    ("POST", "/v1/jobs/{job_id}/fail"): lambda: {"lease_token": "tok", "error": "boom"},
    ("POST", "/v1/refit"): lambda: {"space": "fbnet", "wait": False},
    ("POST", "/v1/tokens"): lambda: {"label": "fuzz", "device": DEVICE, "expires_in_s": 3600},
}
# Never mutated: a refit with wait=true would fit predictors and search fronts (seconds each).
FROZEN = {("POST", "/v1/refit"): {("wait",)}}
_DEFAULT_BY_NAME = {
    "space": SPACE,
    "task": TASK,
    "device": DEVICE,
    "name": DEVICE,
    "arch": ARCH,
    "metric": "latency_ms",
    "profiler": PROFILER,
}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return _resolve(spec, options[0]) if options else {"type": "null"}
    return schema


def _sample(spec: dict[str, Any], name: str, schema: dict[str, Any]) -> Any:
    """A plausible value of a property of a route that has no template here."""
    schema = _resolve(spec, schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2024-01-01T00:00:00Z"
        return _DEFAULT_BY_NAME.get(name, "x")
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {p: _sample(spec, p, s) for p, s in schema.get("properties", {}).items()}
    return None


def _fill_path(template: str, service: Service) -> str:
    values = {"job_id": str(service.job_id or 1), "name": DEVICE, "space": SPACE}
    return "/".join(
        values.get(part[1:-1], "1") if part.startswith("{") else part for part in template.split("/")
    )


@dataclass
class Op:
    method: str
    template: str
    path: str
    body: Any

    @property
    def frozen(self) -> set[tuple[Any, ...]]:
        return FROZEN.get((self.method, self.template), set())


def body_ops(service: Service) -> list[Op]:
    """Every route with a JSON body in the app's OpenAPI (templates here, or sampled)."""
    spec = service.auth_client.app.openapi()  # type: ignore[attr-defined]
    ops = []
    for template, methods in spec["paths"].items():
        for method, operation in methods.items():
            # Uploads of files (POST /v1/supernets) have no JSON body to sweep.
            json_body = "application/json" in operation.get("requestBody", {}).get("content", {})
            if not json_body or method.upper() == "DELETE":
                continue
            key = (method.upper(), template)
            if key in TEMPLATES:
                body = TEMPLATES[key]()
            else:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                body = _sample(spec, "", schema)
            ops.append(Op(method.upper(), template, _fill_path(template, service), body))
    return ops


def get_operations(service: Service) -> list[tuple[str, list[dict[str, Any]]]]:
    """(path template, parameters) of every GET route in the app's OpenAPI, and the web page's."""
    spec = service.auth_client.app.openapi()  # type: ignore[attr-defined]
    return [
        (path, [p for p in methods["get"].get("parameters", [])])
        for path, methods in spec["paths"].items()
        if "get" in methods
    ] + [("/web/{name}", [{"name": "name", "in": "path", "required": True}])]


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """(path, is_object) of every value inside ``value``, itself included."""
    yield prefix, isinstance(value, dict)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from json_paths(item, (*prefix, i))


def replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(body)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def numeric_paths(body: Any) -> list[tuple[Any, ...]]:
    """The path of every number (booleans aside) inside ``body``."""
    out = []
    for path, _ in json_paths(body):
        value = body
        for step in path:
            value = value[step]
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(path)
    return out


# -------------------------------------------------------------------------------- strategies

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
CHARACTER = st.one_of(st.characters(), SURROGATE, st.sampled_from("\x00\ufffd\ufeff\u2028\U0001d518"))
TEXTS = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(CHARACTER, max_size=12))
EXTREME_FLOATS = [1e308, -1e308, 1.7976931348623157e308, 5e-324, -5e-324, 2.2250738585072014e-308, -0.0]
EXTREME_FLOATS += [0.0, 1e16, 2.0**53, 0.1, 1e-300, 123456789.123456789]
EXTREME_INTS = [2**53, 2**53 + 1, -(2**53), 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 0, INT32, INT32 + 1]
RAW_NUMBERS = [
    "1" + "0" * 5000,
    "-" + "9" * 5000,
    "0." + "0" * 5000 + "1",
    "1e400",
    "-1e400",
    "1E-400",
    "1e99999999999999999999",
    "123456789012345678901234567890.5",
    "-0",
    "0e0",
]
NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(EXTREME_FLOATS + EXTREME_INTS),
    st.sampled_from([Raw(n) for n in RAW_NUMBERS]),
)
DATETIMES_TEXT = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-12:00",
    "0001-01-01T00:00:00",
    "0001-01-01",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59-12:00",
    "9999-12-31T23:59:59+14:00",
    "9999-12-31",
    "0000-01-01",
    "0000-01-01T00:00:00Z",
    "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60.5+00:00",
    "10000-01-01T00:00:00Z",
    "99999-12-31T00:00:00Z",
    "+002016-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:00+24:00",
    "2024-01-01T00:00:00+23:59",
    "2024-01-01T00:00:00-23:59",
    "2024-01-01T00:00:00.123456789Z",
    "2024-01-01T00:00:00\x00Z",
    "2024-01-01T00:00:00\ud800",
    "1970-01-01T00:00:00Z",
    "2024-W01-1",
    "20240101T000000Z",
]
DATETIME_VALUES: list[Any] = DATETIMES_TEXT + [0, -1, 1e308, -1e308, 253402300800, -62135596801, 2**63, 1.5]
DATETIME_VALUES += [Raw("1" + "0" * 5000), True, [], {}]

JSON_LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS, st.sampled_from(DATETIMES_TEXT))
JSON_ANY = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=10,
)

client_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,40}\Z")
names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}\Z")
finite_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(EXTREME_FLOATS)
positive_floats = st.floats(min_value=5e-324, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [5e-324, 1e308, 1.7976931348623157e308, 2.2250738585072014e-308, 1e-300]
)
nonneg_floats = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, 5e-324, 1e308]
)
safe_ints = st.integers(-(2**53), 2**53) | st.sampled_from([2**53, -(2**53), 0, -1, INT32])
timezones = st.none() | st.builds(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)), st.integers(-12 * 60, 14 * 60)
)
datetimes = st.datetimes(
    min_value=dt.datetime(1, 1, 1),
    max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=timezones,
)


def environments(leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[str] = TEXTS) -> st.SearchStrategy:
    """JSON objects of the given leaves, with some values wrapped up to 40 levels deep."""
    values = st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=8,
    )
    deep = st.builds(nest, values, st.lists(st.sampled_from(["list", "dict"]), max_size=40))
    return st.dictionaries(keys, values | deep, max_size=4)


ENV_TEXT = environments(TEXTS)
ENV_NUMBERS = environments(st.one_of(safe_ints, finite_floats), keys=st.sampled_from(["a", "b", "c"]))
ENV_SHAPES = environments(st.one_of(st.none(), st.booleans(), st.integers(-9, 9), st.sampled_from(["s", ""])))
ENV_ANY = environments(st.one_of(st.none(), st.booleans(), safe_ints, finite_floats, TEXTS))


@st.composite
def measurement_items(draw: st.DrawFn, env: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A measurement item that may or may not be valid; optional fields present at random."""
    latency = draw(st.booleans())
    item: dict[str, Any] = {
        "id": draw(client_ids),
        "space": SPACE,
        "arch": draw(st.sampled_from(ARCHS)),
        "metric": "latency_ms" if latency else "score",
    }
    if latency:
        item["device"] = DEVICE
        item["value"] = draw(positive_floats)
    else:
        item["task"] = draw(st.sampled_from(TASKS))
        item["value"] = draw(finite_floats)
    optional = {
        "std": nonneg_floats,
        "repeats": st.integers(1, INT32),
        "profiler": names,
        "profiler_version": st.text(CHARACTER, max_size=64),
        "environment": env,
        "drift": nonneg_floats,
        "flagged": st.booleans(),
        "measured_at": st.builds(dt.datetime.isoformat, datetimes),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            item[key] = draw(strategy)
    return item


# --------------------------------------------------------------------------- read-back checks

_PARSE_DATETIME = TypeAdapter(dt.datetime)


def expected_instant(value: Any) -> dt.datetime:
    """The instant the API should store for an accepted ``measured_at`` (naive: UTC)."""
    parsed = _PARSE_DATETIME.validate_json(encode(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def same_instant(sent: Any, got: Any) -> bool:
    if sent is None or got is None:
        return sent is got
    try:
        return expected_instant(sent) == dt.datetime.fromisoformat(got)
    except (ValueError, OverflowError):
        return False


MEASUREMENT_FIELDS = {
    "space": None,
    "arch": None,
    "device": None,
    "task": None,
    "metric": None,
    "value": None,
    "std": None,
    "repeats": None,
    "profiler": None,
    "profiler_version": None,
    "environment": None,
    "drift": None,
    "flagged": False,
}


def measurement_differences(sent: dict[str, Any], got: dict[str, Any], check_time: bool = True) -> list[str]:
    """How a measurement read back differs from the item that was accepted."""
    expected = json_round_trip(sent)
    out = []
    for key, default in MEASUREMENT_FIELDS.items():
        want = expected.get(key, default)
        if not same_json(got.get(key), want):
            out.append(f"{key}: sent {want!r}, read back {got.get(key)!r}")
    if "id" in sent and got.get("client_id") != expected["id"]:
        out.append(f"id: sent {expected['id']!r}, read back {got.get('client_id')!r}")
    if check_time and not same_instant(expected.get("measured_at"), got.get("measured_at")):
        out.append(f"measured_at: sent {expected.get('measured_at')!r}, read back {got.get('measured_at')!r}")
    return out


def read_back_measurements(
    client: TestClient, headers: dict[str, str], items: list[dict[str, Any]]
) -> list[str]:
    """Every accepted item through GET /v1/measurements, unfiltered and with filters (each alone
    and all of an item's together); /v1/jobs and /v1/campaigns must answer 200 too."""
    problems = []
    queries: list[tuple[tuple[str, str], ...]] = [(), (("device", DEVICE),)]
    for item in items:
        target = ("device", DEVICE) if item.get("device") else ("task", item["task"])
        queries.append((("space", item["space"]), ("metric", item["metric"]), ("arch", item["arch"]), target))
        queries.append((("arch", item["arch"]),))
        queries.append((target,))
    for query in dict.fromkeys(queries):
        url = "/v1/measurements?" + "".join(f"{k}={quote(v)}&" for k, v in query) + "limit=1000"
        rows = {row["client_id"]: row for row in get_json(client, url, headers)["measurements"]}
        for item in items:
            if any(item.get(key) != value for key, value in query):
                continue
            if item["id"] not in rows:
                problems.append(f"GET {url}: accepted item {item['id']!r} missing")
                continue
            problems.extend(f"GET {url}: {d}" for d in measurement_differences(item, rows[item["id"]]))
    for url in ("/v1/jobs?limit=1000", "/v1/campaigns"):
        get_json(client, url, headers)
    return problems


def with_unique_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items with ids unique to this example (Hypothesis repeats drawn ids across examples)."""
    prefix = uuid.uuid4().hex[:8]
    return [dict(item, id=f"{prefix}{i}-{item['id']}"[:64]) for i, item in enumerate(items)]
