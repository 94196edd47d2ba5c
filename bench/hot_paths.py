"""Hot paths of the API, each as a ratio to a baseline measured in the same run.

    .venv/bin/python bench/hot_paths.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres --seconds 10 \\
        [--connections 4 16] [--with-worker] [--json PATH]

It creates a fresh database on the given server, starts `rendio serve --no-worker` on it (with
`--with-worker`: plain `rendio serve`, its in-process worker included, to see whether the
worker causes latency spikes), onboards guests through device-check and tops them up through
the ledger. Then, at each connection count, `wrk -t2 --latency` for `--seconds` on:

* GET get-models, and again with `If-None-Match` set to its ETag (304);
* GET get-video-status of one of the guest's jobs, and GET get-user-credits (bearer token);
* POST generate-video, a fresh Idempotency-Key per request (a wrk Lua script), over the guests;
* POST device-check, a new device per request (a wrk Lua script).

Baselines, measured in the same run at the same connection count, beside each path:

* (a) `bare`, for get-models: a FastAPI app in this file answering GET /bare with constant
  bytes, served in its own process through `rendio.platform.server.serve` with settings built
  the same way (the environment `rendio serve` gets);
* (b) for the paths that need the database, pgbench (`-c` = connections, `-j 2`, `-T
  seconds`, `-M prepared`) running the least SQL that does the path's database work in one
  transaction (`*_SQL` below): the physical limit of the database here. generate-video is
  also compared with the statements the endpoint runs today (`generate-own-statements`:
  `PGBENCH_SCRIPT` of bench/generate_video.py, `-M simple`; nine until 2026-12-05, three now).

Last, "p99 at half of each peak": an open-loop client in this file sends requests at half the
best rps wrk reached on each path, on a schedule, over a pool of keep-alive connections, and
measures each latency from the request's scheduled time (so waiting counts). It reports the
CPU it used itself: on a 2-core machine the load generator competes with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from string import Template
from typing import Any

import httpx
import jwt
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from generate_video import BODY, MODEL_ID, top_up  # noqa: E402
from generate_video import PGBENCH_SCRIPT as OWN_STATEMENTS_SQL  # noqa: E402
from tests.helpers.database import create_database, drop_database  # noqa: E402
from tests.helpers.processes import free_port, stop_process  # noqa: E402

from rendio.config import Settings, load_settings  # noqa: E402
from rendio.platform.db import libpq_url  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402

BARE_BODY = b'{"status":"ok"}'
STARTER_CREDITS = 10  # Settings.starter_credits' default: what device-check grants
# No rate limit may refuse the benchmark: every `rate_limit_*` setting, far out of reach.
UNLIMITED = {
    f"RENDIO_{name.upper()}": "1000000000/minute"
    for name in Settings.model_fields
    if name.startswith("rate_limit_")
}
WRK_TIMEOUT = "10s"

# ---------------------------------------------------------------------------------------------
# Baselines (b): the least SQL doing each path's database work, one transaction per request.
# `bench_clients` (n, uid, sid, job) holds the onboarded guests: joining it stands in for the
# ids the API reads from the JWT (one more primary-key lookup in the same statement).

SESSION_CHECK = """FROM bench_clients b JOIN auth_sessions s ON s.id = b.sid
  JOIN users u ON u.id = s.user_id AND u.id = b.uid"""

CREDITS_SQL = f"""\\set n random(1, :clients)
SELECT u.*, s.revoked_at {SESSION_CHECK} WHERE b.n = :n;
"""

STATUS_SQL = f"""\\set n random(1, :clients)
SELECT u.*, s.revoked_at, j.job_id, j.status, j.progress, j.video_url, j.thumbnail_url,
  j.credits_used, j.error_code, j.created_at, j.completed_at, j.media_expired_at
  {SESSION_CHECK}
  LEFT JOIN video_jobs j ON j.job_id = b.job AND j.user_id = u.id AND j.deleted_at IS NULL
  WHERE b.n = :n;
"""

# Session check; the job (its model's terms read in the same statement); guarded debit with
# its ledger row; the queue row; the idempotency claim, which is the key's unique insert
# holding its answer (a conflict would be a replay: roll back and answer the stored one).
# pgbench takes `:name` for a variable even inside a literal, hence 'generation:' || '…'.
GENERATE_SQL = f"""\\set n random(1, :clients)
\\set k random(1, 9223372036854775806)
BEGIN;
SELECT u.id AS uid {SESSION_CHECK}
  WHERE b.n = :n AND s.revoked_at IS NULL AND u.banned_at IS NULL \\gset
INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, provider_model_id,
  credits_used, deadline_seconds, deadline_at)
  SELECT :uid::uuid, id, 'a paper boat on a river at dawn',
    '{{"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"}}', provider,
    provider_model_id, cost_per_generation, deadline_seconds, now() + make_interval(secs => 300)
  FROM models WHERE id = '{MODEL_ID}' AND is_available RETURNING job_id \\gset
WITH moved AS (UPDATE users SET credits_remaining = credits_remaining - 1, updated_at = now()
  WHERE id = :uid::uuid AND credits_remaining >= 1 RETURNING id, credits_remaining)
INSERT INTO quota_log (user_id, job_id, change, reason, transaction_id, balance_after)
  SELECT id, :job_id::uuid, -1, 'generation', 'generation:' || :job_id::text, credits_remaining
  FROM moved RETURNING balance_after;
INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args) VALUES ('default',
  'generation:' || 'advance_job', 'video-job:' || :job_id::text,
  jsonb_build_object('job_id', :job_id::text));
INSERT INTO idempotency_log (user_id, idempotency_key, operation, request_fingerprint,
  status_code, response_body, job_id, expires_at) VALUES (:uid::uuid,
  'pgbench-' || :client_id::text || '-' || :k::text, 'generate-video', 'f', 200, '{{}}',
  :job_id::uuid, now() + interval '24 hours') ON CONFLICT DO NOTHING RETURNING id;
COMMIT;
"""

# A new device: its DeviceCheck bits (trust verifier), the guest with its starter credits
# and their ledger row, a session and its first refresh token, in one statement.
DEVICE_SQL = f"""\\set d random(1, 9223372036854775806)
WITH bits AS (INSERT INTO device_bits (device_key, bit0) VALUES (encode(sha256(convert_to(
    'tok-pgbench-' || :client_id::text || '-' || :d::text, 'UTF8')), 'hex'), true)
    RETURNING device_key),
  guest AS (INSERT INTO users (device_id, credits_remaining, credits_total,
    initial_grant_claimed) VALUES ('dev-pgbench-' || :client_id::text || '-' || :d::text,
    {STARTER_CREDITS}, {STARTER_CREDITS}, true) RETURNING *),
  granted AS (INSERT INTO quota_log (user_id, change, reason, transaction_id, balance_after)
    SELECT id, {STARTER_CREDITS}, 'initial_grant', 'initial_grant:' || id, credits_remaining
    FROM guest RETURNING id),
  opened AS (INSERT INTO auth_sessions (user_id, amr) SELECT id, 'anonymous' FROM guest
    RETURNING id)
INSERT INTO refresh_tokens (token_hash, session_id)
  SELECT encode(sha256(convert_to(gen_random_uuid()::text, 'UTF8')), 'hex'), id FROM opened
  RETURNING session_id;
"""


@dataclasses.dataclass(frozen=True)
class Baseline:
    name: str
    sql: str
    mode: str = "prepared"  # pgbench -M


# ---------------------------------------------------------------------------------------------
# wrk scripts for requests that must differ from each other. `prefix` is unique per run and
# thread, so keys and devices never repeat across runs.

LUA_PREFIX = """-- written by bench/hot_paths.py
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", string.format("${nonce}-t%d-", threads))
end
local count = 0
"""

GENERATE_LUA = Template(
    LUA_PREFIX
    + """local tokens = { ${tokens} }
local body = [==[${body}]==]
function request()
  count = count + 1
  return wrk.format("POST", "/functions/v1/generate-video", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[(count % #tokens) + 1],
    ["Idempotency-Key"] = prefix .. count,
  }, body)
end
"""
)

DEVICE_LUA = Template(
    LUA_PREFIX
    + """function request()
  count = count + 1
  local id = prefix .. count
  return wrk.format("POST", "/functions/v1/device-check",
    { ["Content-Type"] = "application/json" },
    '{"device_id":"dev-' .. id .. '","device_token":"tok-' .. id .. '"}')
end
"""
)


# ---------------------------------------------------------------------------------------------
# What is measured.

Vary = Callable[[int, str], tuple[dict[str, str], bytes]]


@dataclasses.dataclass(frozen=True)
class Target:
    """One path: how to ask for it, what it should answer, what it is compared with."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    expect: int
    baselines: tuple[str, ...]
    lua: Template | None = None  # for wrk, when requests must differ
    vary: Vary | None = None  # for the open-loop client: (i, unique) → headers, body
    lua_values: dict[str, str] = dataclasses.field(default_factory=dict)

    def script(self, nonce: str) -> str | None:
        if self.lua is None:
            return None
        return self.lua.substitute(nonce=nonce, **self.lua_values)

    def request(self, i: int, unique: str) -> tuple[dict[str, str], bytes]:
        if self.vary is None:
            return dict(self.headers), b""
        extra, body = self.vary(i, unique)
        return {**self.headers, **extra}, body


@dataclasses.dataclass(frozen=True)
class Guest:
    token: str
    user_id: str
    session_id: str
    job_id: str


def build_targets(guests: list[Guest], etag: str) -> list[Target]:
    first = guests[0]
    bearer = {"Authorization": f"Bearer {first.token}"}
    body = json.dumps(BODY)
    tokens = [guest.token for guest in guests]

    def generate(i: int, unique: str) -> tuple[dict[str, str], bytes]:
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {tokens[i % len(tokens)]}",
            "Idempotency-Key": unique,
        }, body.encode()

    def device(i: int, unique: str) -> tuple[dict[str, str], bytes]:
        fields = {"device_id": f"dev-{unique}", "device_token": f"tok-{unique}"}
        return {"Content-Type": "application/json"}, json.dumps(fields).encode()

    return [
        Target("GET get-models", "GET", "/functions/v1/get-models", {}, 200, ("bare",)),
        Target(
            "GET get-models (If-None-Match: 304)",
            "GET",
            "/functions/v1/get-models",
            {"If-None-Match": etag},
            304,
            ("bare",),
        ),
        Target(
            "GET get-video-status",
            "GET",
            f"/functions/v1/get-video-status?job_id={first.job_id}",
            bearer,
            200,
            ("status",),
        ),
        Target(
            "GET get-user-credits",
            "GET",
            "/functions/v1/get-user-credits",
            bearer,
            200,
            ("credits",),
        ),
        Target(
            "POST generate-video",
            "POST",
            "/functions/v1/generate-video",
            {},
            200,
            ("generate", "generate-own-statements"),
            lua=GENERATE_LUA,
            vary=generate,
            lua_values={"tokens": ", ".join(f'"{t}"' for t in tokens), "body": body},
        ),
        Target(
            "POST device-check (new device)",
            "POST",
            "/functions/v1/device-check",
            {},
            200,
            ("device",),
            lua=DEVICE_LUA,
            vary=device,
        ),
    ]


BARE = Target("bare FastAPI GET /bare (baseline a)", "GET", "/bare", {}, 200, ())


def build_baselines() -> dict[str, Baseline]:
    baselines = [
        Baseline("status", STATUS_SQL),
        Baseline("credits", CREDITS_SQL),
        Baseline("generate", GENERATE_SQL),
        Baseline("generate-own-statements", OWN_STATEMENTS_SQL, mode="simple"),
        Baseline("device", DEVICE_SQL),
    ]
    return {baseline.name: baseline for baseline in baselines}


# ---------------------------------------------------------------------------------------------
# Processes: the API, the bare app. Each is stopped when its context ends, whatever happens.


def service_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENDIO_")}
    env.update(
        RENDIO_DATABASE_URL=database_url,
        RENDIO_DATA_DIR=str(data_dir),
        RENDIO_LOG_LEVEL="warning",
        RENDIO_DB_POOL_SIZE="20",
        **UNLIMITED,
    )
    return env


@contextlib.contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path, ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(process, ready_url, log)
        yield process
    finally:
        stop_process(process)


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited ({process.returncode}):\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within 90 s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def api_command(port: int, with_worker: bool) -> list[str]:
    command = [sys.executable, "-m", "rendio", "serve", "--port", str(port)]
    return command if with_worker else [*command, "--no-worker"]


def serve_bare(port: int) -> None:
    """The bare baseline's process: constant bytes, through the server `rendio serve` uses."""
    from fastapi import FastAPI, Response

    from rendio.platform.logging import configure_logging
    from rendio.platform.server import serve

    settings = load_settings(port=port)  # as `rendio serve` builds them, from the same env
    configure_logging(settings.log_level, settings.log_format)
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> Response:
        return Response(BARE_BODY, media_type="application/json")

    serve(app, settings)


# ---------------------------------------------------------------------------------------------
# Fixtures in the database: guests with credits and one job each, `bench_clients` for pgbench.


def onboard(base_url: str, database_url: str, count: int) -> list[Guest]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        tokens = [device_check(http, n) for n in range(count)]
        top_up(database_url)
        guests = [guest_with_job(http, token) for token in tokens]
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_clients (n int PRIMARY KEY, uid uuid, sid uuid, job uuid)")
        for n, guest in enumerate(guests, start=1):
            conn.execute(
                "INSERT INTO bench_clients VALUES (%s, %s, %s, %s)",
                [n, guest.user_id, guest.session_id, guest.job_id],
            )
        conn.execute("ANALYZE")
    return guests


def device_check(http: httpx.Client, n: int) -> str:
    answer = http.post(
        "/functions/v1/device-check",
        json={"device_id": f"hot-{n}", "device_token": f"hot-phone-{n}"},
    )
    answer.raise_for_status()
    return str(answer.json()["session"]["access_token"])


def guest_with_job(http: httpx.Client, token: str) -> Guest:
    answer = http.post(
        "/functions/v1/generate-video",
        json=BODY,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
    )
    answer.raise_for_status()
    claims = jwt.decode(token, options={"verify_signature": False})
    return Guest(token, claims["sub"], claims["session_id"], answer.json()["job_id"])


def precheck(base_url: str, target: Target) -> str | None:
    """One request of the target's shape; a note if it does not answer what it should."""
    headers, body = target.request(0, f"precheck-{uuid.uuid4().hex[:8]}")
    answer = httpx.request(
        target.method, base_url + target.path, headers=headers, content=body or None, timeout=30
    )
    if answer.status_code == target.expect:
        return None
    return f"{target.name}: expected {target.expect}, got {answer.status_code}: {answer.text[:200]}"


# ---------------------------------------------------------------------------------------------
# Closed-loop figures: wrk for the API and the bare app, pgbench for the database.


@dataclasses.dataclass
class Figure:
    name: str
    connections: int
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    failures: int
    command: list[str]
    note: str = ""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def wrk(url: str, target: Target, connections: int, seconds: int, work: Path) -> Figure:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s"]
    command += ["--latency", "--timeout", WRK_TIMEOUT]
    script = target.script(uuid.uuid4().hex[:10])
    if script is None:
        for name, value in target.headers.items():
            command += ["-H", f"{name}: {value}"]
    else:
        path = work / f"{target.path.rsplit('/', 1)[-1]}.lua"
        path.write_text(script)
        command += ["-s", str(path)]
    command.append(url + target.path)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return parse_wrk(target.name, connections, command, done.stdout + done.stderr)


def parse_wrk(name: str, connections: int, command: list[str], out: str) -> Figure:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    quantiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)\s*$", out, re.MULTILINE))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    return Figure(
        name,
        connections,
        float(rps.group(1)) if rps else None,
        wrk_ms(quantiles.get("50")),
        wrk_ms(quantiles.get("99")),
        int(bad.group(1)) if bad else 0,
        command,
        note=(f"{errors} socket errors" if errors else "") if rps else out.strip()[-300:],
    )


def wrk_ms(value: str | None) -> float | None:
    if value is None:
        return None
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def pgbench(
    database_url: str, baseline: Baseline, connections: int, seconds: int, clients: int, work: Path
) -> Figure:
    script = work / f"{baseline.name}.sql"
    script.write_text(baseline.sql)
    command = ["pgbench", "-n", "-M", baseline.mode, "-f", str(script)]
    command += ["-c", str(connections), "-j", str(min(connections, 2)), "-T", str(seconds)]
    command += ["-D", f"clients={clients}", libpq_url(database_url)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    out = done.stdout + done.stderr
    tps = re.search(r"tps = ([\d.]+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    aborted = done.returncode != 0
    return Figure(
        f"pgbench {baseline.name}",
        connections,
        float(tps.group(1)) if tps else None,
        float(latency.group(1)) if latency else None,  # pgbench gives the mean, not p50
        None,
        int(failed.group(1)) if failed else 0,
        command,
        note=out.strip()[-300:] if aborted or tps is None else "",
    )


# ---------------------------------------------------------------------------------------------
# Open-loop figures: requests on a fixed schedule, latency counted from the scheduled time.


class Http1:
    """A bare keep-alive HTTP/1.1 connection: little CPU per request, on a shared machine."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> int:
        """Send one request and read its whole answer; its status."""
        if self.reader is None or self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        if status not in (204, 304) and status >= 200:
            await self.read_body(head)
        if b"\r\nconnection: close" in head:
            self.close()
        return status

    async def read_body(self, head: bytes) -> None:
        assert self.reader is not None
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if length is not None:
            await self.reader.readexactly(int(length.group(1)))
        elif b"\r\ntransfer-encoding: chunked" in head:
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                await self.reader.readexactly(size + 2)
            while await self.reader.readline() not in (b"\r\n", b""):
                pass


@dataclasses.dataclass
class OpenLoop:
    name: str
    target_rps: float
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    late_p99_ms: float | None  # scheduled time → request written: the client's own delay
    failures: int
    pool: int
    client_cpu_percent: float
    statuses: dict[int, int]


@dataclasses.dataclass
class Tally:
    latencies: list[float] = dataclasses.field(default_factory=list)  # ms, from scheduled time
    lateness: list[float] = dataclasses.field(default_factory=list)  # ms, until written
    statuses: Counter[int] = dataclasses.field(default_factory=Counter)


def raw_request(target: Target, i: int, unique: str) -> bytes:
    headers, body = target.request(i, unique)
    lines = [f"{target.method} {target.path} HTTP/1.1", "Host: bench"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if target.method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def pool_size(rate: float) -> int:
    """Enough connections that none waits at half the peak, few enough that each is used
    before the server's 5 s keep-alive timeout closes it."""
    return max(4, min(64, math.ceil(rate / 4)))


Schedule = asyncio.Queue[tuple[int, float] | None]


async def open_loop(port: int, target: Target, rate: float, seconds: int) -> OpenLoop:
    """Request i is due at start + i / rate, whatever the answers before it are doing.
    Times come from perf_counter: uvloop's loop.time() has millisecond steps."""
    nonce = uuid.uuid4().hex[:10]
    schedule: Schedule = asyncio.Queue()
    tally = Tally()
    connections = [Http1(port) for _ in range(pool_size(rate))]
    await asyncio.gather(*(connection.connect() for connection in connections))
    senders = [
        asyncio.create_task(send_when_due(connection, schedule, target, nonce, tally))
        for connection in connections
    ]
    cpu, start = time.process_time(), time.perf_counter() + 0.01
    try:
        await dispatch(schedule, start, rate, round(rate * seconds))
        for _ in senders:
            schedule.put_nowait(None)
        await asyncio.gather(*senders)
    finally:
        for sender in senders:
            sender.cancel()
        for connection in connections:
            connection.close()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return summarize(target.name, rate, tally, wall, cpu, len(connections))


async def dispatch(schedule: Schedule, start: float, rate: float, count: int) -> None:
    for i in range(count):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        schedule.put_nowait((i, due))


async def send_when_due(
    connection: Http1, schedule: Schedule, target: Target, nonce: str, tally: Tally
) -> None:
    fixed = raw_request(target, 0, nonce) if target.vary is None else None
    while (item := await schedule.get()) is not None:
        i, due = item
        request = fixed or raw_request(target, i, f"{nonce}-{i}")
        tally.lateness.append((time.perf_counter() - due) * 1000)
        try:
            status = await exchange_retrying(connection, request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.statuses[0] += 1  # no answer
            continue
        tally.latencies.append((time.perf_counter() - due) * 1000)
        tally.statuses[status] += 1


def summarize(name: str, rate: float, tally: Tally, wall: float, cpu: float, pool: int) -> OpenLoop:
    ordered = sorted(tally.latencies)
    return OpenLoop(
        name,
        rate,
        len(ordered) / wall,
        quantile(ordered, 0.50),
        quantile(ordered, 0.99),
        ordered[-1] if ordered else None,
        quantile(sorted(tally.lateness), 0.99),
        sum(n for status, n in tally.statuses.items() if not 200 <= status < 400),
        pool,
        100 * cpu / wall,
        dict(tally.statuses),
    )


async def exchange_retrying(connection: Http1, request: bytes) -> int:
    """One retry on a fresh connection: the server may have closed an idle one."""
    try:
        return await connection.exchange(request)
    except (OSError, asyncio.IncompleteReadError):
        await connection.connect()
        return await connection.exchange(request)


def quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_async(coroutine: Coroutine[Any, Any, OpenLoop]) -> OpenLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ---------------------------------------------------------------------------------------------
# The run and its report.


@dataclasses.dataclass
class Row:
    path: Figure
    baseline: Figure | None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.rps or self.path.rps is None:
            return None
        return self.path.rps / self.baseline.rps


def measure(
    api: str,
    bare: str,
    database_url: str,
    targets: list[Target],
    baselines: dict[str, Baseline],
    args: argparse.Namespace,
    clients: int,
    work: Path,
) -> list[Row]:
    """Per connection count: the bare app, then each path followed by its baselines."""
    rows: list[Row] = []
    for connections in args.connections:
        done: dict[str, Figure] = {}
        bare_figure = wrk(bare, BARE, connections, args.seconds, work)
        rows.append(Row(bare_figure, None))
        for target in targets:
            figure = wrk(api, target, connections, args.seconds, work)
            for name in target.baselines:
                if name == "bare":
                    rows.append(Row(figure, bare_figure))
                    continue
                if name not in done:
                    done[name] = pgbench(
                        database_url, baselines[name], connections, args.seconds, clients, work
                    )
                rows.append(Row(figure, done[name]))
    return rows


def half_peaks(
    api_port: int, bare_port: int, targets: list[Target], rows: list[Row], seconds: int
) -> list[OpenLoop]:
    results = []
    for target, port in [(BARE, bare_port)] + [(target, api_port) for target in targets]:
        peak = max((row.path.rps or 0 for row in rows if row.path.name == target.name), default=0)
        if peak > 0:
            results.append(run_async(open_loop(port, target, peak / 2, seconds)))
    return results


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[Row]) -> None:
    print(
        "| path | connections | rps | p50 ms | p99 ms | non-2xx | baseline | baseline rps/tps "
        "| ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        path, base = row.path, row.baseline
        failures = f"{path.failures}" + (f" ({path.note})" if path.note else "")
        print(
            f"| {path.name} | {path.connections} | {number(path.rps)} | {number(path.p50_ms, 1)} "
            f"| {number(path.p99_ms, 1)} | {failures} | {base.name if base else '-'} "
            f"| {number(base.rps) if base else '-'}{' (!)' if base and base.note else ''} "
            f"| {number(row.ratio, 2)} |"
        )


def print_half_peaks(results: list[OpenLoop]) -> None:
    print(
        "| path | target rps (half peak) | achieved rps | p50 ms | p99 ms | max ms | non-2xx "
        "| connections | client late p99 ms | client CPU % of a core |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.name} | {r.target_rps:.0f} | {r.achieved_rps:.0f} | {number(r.p50_ms, 1)} "
            f"| {number(r.p99_ms, 1)} | {number(r.max_ms, 1)} | {r.failures} | {r.pool} "
            f"| {number(r.late_p99_ms, 1)} | {r.client_cpu_percent:.0f} |"
        )
    late = [r.name for r in results if (r.late_p99_ms or 0) > (r.p99_ms or 0) / 2]
    if late:
        print(
            f"\nThe client's own delay is over half the p99 on: {', '.join(late)}; there the "
            "figure measures the client more than the server."
        )
    heavy = [r.name for r in results if r.client_cpu_percent > 50]
    if heavy:
        print(
            f"\nThe open-loop client used over half a core on: {', '.join(heavy)}; on a 2-core "
            "machine it then takes CPU the server needs, so those latencies are pessimistic."
        )


def print_commands(rows: list[Row], guests: list[Guest]) -> None:
    seen: set[str] = set()
    print("\nCommands (at the first connection count; tokens shortened):")
    for row in rows:
        for figure in (row.path, row.baseline):
            if figure is None or figure.name in seen:
                continue
            seen.add(figure.name)
            print(f"* {figure.name}: `{shown(figure.command, guests)}`")
    for row in rows:
        for figure in (row.path, row.baseline):
            if figure is not None and figure.note and figure.rps is None:
                print(f"! {figure.name} at {figure.connections}: {figure.note}")


def shown(command: list[str], guests: list[Guest]) -> str:
    text = shlex.join(command)
    for guest in guests:
        text = text.replace(guest.token, guest.token[:12] + "…")
    return text


def catalog_etag(base_url: str) -> str:
    answer = httpx.get(base_url + "/functions/v1/get-models", timeout=30)
    answer.raise_for_status()
    return str(answer.headers["etag"])


def warm_up(api: str, targets: list[Target], seconds: int, work: Path) -> None:
    for target in targets:
        wrk(api, target, 4, seconds, work)


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"rendio_hot_paths_{os.getpid()}"
    database_url = create_database(args.database_url, name)
    work = Path(tempfile.mkdtemp(prefix="hot_paths_"))
    try:
        prepare_database(database_url)
        return run_on(database_url, work, args)
    finally:
        drop_database(args.database_url, name)
        shutil.rmtree(work, ignore_errors=True)


def run_on(database_url: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = service_env(database_url, work / "data")
    api_port, bare_port = free_port(), free_port()
    api, bare = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{bare_port}"
    bare_command = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)]
    with (
        running(api_command(api_port, args.with_worker), env, work / "api.log", api + "/health"),
        running(bare_command, env, work / "bare.log", bare + "/bare"),
    ):
        guests = onboard(api, database_url, max(args.connections))
        etag = catalog_etag(api)
        targets = [
            target
            for target in build_targets(guests, etag)
            if not args.paths or any(word in target.name for word in args.paths)
        ]
        for note in filter(None, (precheck(api, t) for t in [*targets])):
            print(f"! precheck: {note}")
        warm_up(api, targets, args.warmup, work)
        baselines = build_baselines()
        rows = measure(api, bare, database_url, targets, baselines, args, len(guests), work)
        half = (
            []
            if args.no_half_peak
            else half_peaks(api_port, bare_port, targets, rows, args.seconds)
        )
    report(rows, half, guests, args)
    return {
        "command": sys.orig_argv,
        "server": shlex.join(api_command(api_port, args.with_worker)),
        "rows": [
            {
                **dataclasses.asdict(row.path),
                "baseline": row.baseline and dataclasses.asdict(row.baseline),
                "ratio": row.ratio,
            }
            for row in rows
        ],
        "half_peak": [dataclasses.asdict(result) for result in half],
        "pgbench_scripts": {name: baseline.sql for name, baseline in baselines.items()},
        "wrk_scripts": {t.name: t.script("NONCE") for t in targets if t.lua is not None},
    }


def report(
    rows: list[Row], half: list[OpenLoop], guests: list[Guest], args: argparse.Namespace
) -> None:
    print(f"\nCommand: {shlex.join(sys.orig_argv)}")
    server = (
        "rendio serve (with its in-process worker)"
        if args.with_worker
        else "rendio serve --no-worker"
    )
    print(f"Server: {server}; {len(guests)} guests; {args.seconds} s per figure\n")
    print_rows(rows)
    if half:
        print(
            f"\nOpen loop at half of each path's best rps above, {args.seconds} s each "
            "(latency from the scheduled send time; client late = scheduled time to request "
            "written, the client's own share):\n"
        )
        print_half_peaks(half)
    print_commands(rows, guests)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk per path first")
    parser.add_argument("--with-worker", action="store_true", help="plain `rendio serve`")
    parser.add_argument("--no-half-peak", action="store_true", help="skip the open-loop runs")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument(
        "--paths", nargs="+", metavar="WORD", help="only the paths whose name holds one of these"
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return
    # A SIGTERM unwinds like Ctrl-C: the servers are stopped and the database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        figures = run(args)
    except KeyboardInterrupt:
        sys.exit(130)  # everything started has been stopped on the way out
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
