"""Load test: `amends serve` (one process, the embedded SQLite default, its background work inside) on a loopback
port, under three kinds of client at once for a sustained period, from asyncio with httpx:

- **events**: N clients posting batches of the shop world's events at a fixed total rate (the world is replayed
  with fresh ids and shifted times when it runs out);
- **console**: staff signed in, viewing the dashboard, the queue and a case page in turn;
- **feedback**: customers opening their feedback link (made through the API) and answering on the page.

Reported per kind: requests, requests/s, p50, p99 and max latency (from sending the request to the last byte) and
errors (any answer but the expected one, or none); then the server's resident memory sampled every 5 s, with its
growth from the end of the first fifth to the end (after warm-up, a leak shows as steady growth).

    .venv/bin/python bench/load.py                                  # 10 minutes, 50 event clients
    .venv/bin/python bench/load.py --seconds 30 --clients 10 --rate 200 --out bench/out/load.md  # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from amends.config import DEFAULT_SQLITE_CACHE_MIB
from amends.recover.roles import Role
from amends.recover.staff import add_staff, set_password
from amends.store import Database, upgrade
from amends.world import generate_world

PASSWORD = "load test passphrase 1"
SECRET = "load-test-secret-key-that-is-long-enough-0123456789"
out = Console(highlight=False, width=140)


@dataclass
class Kind:
    """One kind of client's results."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    items: int = 0  # events, for the events kind

    def record(self, started: float, ok: bool, what: str) -> None:
        self.latencies.append((time.perf_counter() - started) * 1000)
        if not ok:
            self.errors.append(what)


def world_events(seed: int) -> Iterator[dict[str, Any]]:
    """The shop world's events, again and again: each round with its own ids and times a world later."""
    events = list(generate_world("shop", customers=3_000, days=60, seed=seed))
    span = timedelta(days=61)
    round_ = 0
    while True:
        for event in events:
            if round_ == 0:
                yield event
                continue
            shifted = datetime.fromisoformat(event["time"]) + span * round_
            yield event | {"id": f"{event['id']}-r{round_}", "time": shifted.isoformat()}
        round_ += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def prepare(folder: Path, port: int, *, sqlite_cache_mib: int) -> tuple[dict[str, str], Database]:
    """A database with staff managers who can sign in, and the server's environment."""
    url = f"sqlite:///{folder / 'amends.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")} | {
        "AMENDS_DATABASE_URL": url, "AMENDS_SECRET_KEY": SECRET, "AMENDS_PORT": str(port),
        "AMENDS_RULE_PACKS": "shop", "AMENDS_DETECT_CLOCK": "events", "AMENDS_QUIET_HOURS": "",
        "AMENDS_OUTBOX_FILE": str(folder / "outbox.jsonl"), "AMENDS_LOG_LEVEL": "warning",
        "AMENDS_PUBLIC_URL": f"http://127.0.0.1:{port}", "AMENDS_FEEDBACK_PAGE_RATE_LIMIT": "100000/minute",
        "AMENDS_SQLITE_CACHE_MIB": str(sqlite_cache_mib),
    }  # fmt: skip
    db = Database(url)
    upgrade(db)
    with db.unit_of_work() as uow:
        for n in range(8):
            add_staff(uow, f"manager-{n}", name=f"Manager {n}", role=Role.MANAGER.value, team=None, email=None,
                      now=datetime.now(UTC))  # fmt: skip
            set_password(uow, f"manager-{n}", PASSWORD, now=datetime.now(UTC))
        uow.commit()
    return env, db


def api_key(env: dict[str, str], folder: Path) -> str:
    amends = str(Path(sys.executable).parent / "amends")
    made = subprocess.run([amends, "keys", "create", "load"], env=env, cwd=folder, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return made.stdout.strip()


async def events_client(base: str, key: str, source: Iterator[dict[str, Any]], lock: asyncio.Lock, kind: Kind,
                        *, batch: int, every: float, until: float) -> None:  # fmt: skip
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as client:
        next_at = time.perf_counter()
        while next_at < until:
            async with lock:
                body = [next(source) for _ in range(batch)]
            started = time.perf_counter()
            try:
                response = await client.post("/v1/events", json=body)
                ok = response.status_code == 200 and not response.json()["rejected"]
                kind.record(started, ok, f"{response.status_code} {response.text[:200]}")
                kind.items += len(body) if ok else 0
            except httpx.HTTPError as exc:
                kind.record(started, False, repr(exc))
            next_at += every
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


async def console_client(base: str, login: str, kind: Kind, *, every: float, until: float, seed: int) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={"Origin": base}) as client:
        page = await client.get("/console/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
        assert nonce is not None, page.text[:300]
        done = await client.post("/console/login", data={"login": login, "password": PASSWORD, "nonce": nonce[1]})
        assert done.status_code == 303, done.text[:300]
        cases: list[str] = []
        while time.perf_counter() < until:
            for path in (
                "/console",
                "/console/dashboard",
                "/console/feedback",
                rng.choice(cases) if cases else "/console",
            ):
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    kind.record(started, response.status_code == 200, f"{path}: {response.status_code}")
                    cases = sorted(set(cases + re.findall(r'href="(/console/cases/\d+)"', response.text)))[:200]
                except httpx.HTTPError as exc:
                    kind.record(started, False, f"{path}: {exc!r}")
                await asyncio.sleep(every)


async def feedback_client(base: str, key: str, number: int, kind: Kind, *, every: float, until: float) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as client:
        asked = 0
        while time.perf_counter() < until:
            asked += 1
            started = time.perf_counter()
            try:
                request = {"interaction": f"visit-{number}-{asked}", "customer": f"C-{asked}"}
                made = await client.post(f"{base}/v1/feedback-requests", headers=headers, json=request)
                ok = made.status_code == 201
                kind.record(started, ok, f"request: {made.status_code} {made.text[:200]}")
                if ok:
                    link = made.json()["url"]
                    started = time.perf_counter()
                    page = await client.get(link)
                    kind.record(started, page.status_code == 200, f"page: {page.status_code}")
                    started = time.perf_counter()
                    said = {"liked": "Quick and friendly.", "disliked": "The wait at the counter.", "rating": "4"}
                    answer = await client.post(link, headers={"Origin": base}, data=said)
                    kind.record(started, answer.status_code in (200, 303), f"answer: {answer.status_code}")
            except httpx.HTTPError as exc:
                kind.record(started, False, repr(exc))
            await asyncio.sleep(every)


async def sample_memory(pid: int, samples: list[tuple[float, float]], until: float) -> None:
    start = time.perf_counter()
    while time.perf_counter() < until:
        samples.append((time.perf_counter() - start, _rss_mib(pid)))
        await asyncio.sleep(5)
    samples.append((time.perf_counter() - start, _rss_mib(pid)))


async def run(base: str, key: str, pid: int, args: argparse.Namespace) -> tuple[list[Kind], list[tuple[float, float]]]:
    kinds = [Kind("events"), Kind("console"), Kind("feedback")]
    until = time.perf_counter() + args.seconds
    source, lock = world_events(seed=7), asyncio.Lock()
    every = args.batch * args.clients / args.rate  # seconds between one client's batches
    samples: list[tuple[float, float]] = []
    tasks = [
        *(events_client(base, key, source, lock, kinds[0], batch=args.batch, every=every, until=until)
          for _ in range(args.clients)),
        *(console_client(base, f"manager-{n % 8}", kinds[1], every=1.0, until=until, seed=n)
          for n in range(args.viewers)),
        *(feedback_client(base, key, n, kinds[2], every=2.0, until=until) for n in range(args.answerers)),
        sample_memory(pid, samples, until),
    ]  # fmt: skip
    await asyncio.gather(*tasks)
    return kinds, samples


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="How long the load lasts (default 10 minutes).")
    parser.add_argument("--clients", type=int, default=50, help="Event clients (default 50).")
    parser.add_argument("--rate", type=float, default=1_000, help="Events per second, all clients together.")
    parser.add_argument("--batch", type=int, default=20, help="Events per request.")
    parser.add_argument("--viewers", type=int, default=5, help="Staff viewing console pages, a page a second each.")
    parser.add_argument("--answerers", type=int, default=5, help="Customers answering feedback, one each 2 s each.")
    parser.add_argument(
        "--sqlite-cache-mib",
        type=int,
        default=DEFAULT_SQLITE_CACHE_MIB,
        help=f"The server's SQLite page cache, all connections together (default {DEFAULT_SQLITE_CACHE_MIB}).",
    )
    parser.add_argument("--out", type=Path, help="Also write the tables as markdown here.")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="amends-load-") as tmp:
        folder, port = Path(tmp), _free_port()
        env, db = prepare(folder, port, sqlite_cache_mib=args.sqlite_cache_mib)
        db.dispose()
        key = api_key(env, folder)
        amends = str(Path(sys.executable).parent / "amends")
        server = subprocess.Popen([amends, "serve"], env=env, cwd=folder, stdout=subprocess.DEVNULL,
                                  stderr=(folder / "serve.log").open("wb"))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    out.print((folder / "serve.log").read_text()[-3000:])
                    return 1
                time.sleep(0.2)
            kinds, samples = asyncio.run(run(base, key, server.pid, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return report(kinds, samples, args)


def report(kinds: list[Kind], samples: list[tuple[float, float]], args: argparse.Namespace) -> int:
    table = Table(title=f"amends serve under load for {args.seconds:g} s: {args.clients} event clients at "
                        f"{args.rate:g} events/s in batches of {args.batch}, {args.viewers} console viewers, "
                        f"{args.answerers} feedback answerers; SQLite cache {args.sqlite_cache_mib} MiB")  # fmt: skip
    for column in ("kind", "requests", "req/s", "events/s", "p50 ms", "p99 ms", "max ms", "errors"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    rows = []
    for kind in kinds:
        row = (kind.name, f"{len(kind.latencies):,}", f"{len(kind.latencies) / args.seconds:,.1f}",
               f"{kind.items / args.seconds:,.0f}" if kind.name == "events" else "",
               f"{_pct(kind.latencies, 0.5):,.1f}", f"{_pct(kind.latencies, 0.99):,.1f}",
               f"{max(kind.latencies, default=float('nan')):,.1f}", f"{len(kind.errors):,}")  # fmt: skip
        rows.append(row)
        table.add_row(*row)
    out.print(table)
    rss = [value for _at, value in samples]
    warm = rss[max(0, len(rss) // 5 - 1)] if rss else float("nan")
    growth = rss[-1] - warm if rss else float("nan")
    memory = (f"server memory (RSS): {rss[0]:,.0f} MiB at start, {warm:,.0f} MiB after the first fifth, "
              f"{rss[-1]:,.0f} MiB at the end, {max(rss):,.0f} MiB at most; growth after warm-up {growth:+,.0f} MiB "
              f"over {len(rss)} samples")  # fmt: skip
    out.print(memory)
    over_time = ", ".join(f"{at:,.0f} s {value:,.0f}" for at, value in samples[:: max(1, len(samples) // 12)])
    out.print(f"RSS over time (MiB): {over_time}")
    for kind in kinds:
        for error in kind.errors[:5]:
            out.print(f"[red]{kind.name} error:[/] {error}")
    if args.out is not None:
        lines = ["| kind | requests | req/s | events/s | p50 ms | p99 ms | max ms | errors |", "|" + "---|" * 8]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + f"\n\n{memory}\n\nRSS over time (MiB): {over_time}\n")
    errors = sum(len(kind.errors) for kind in kinds)
    return 0 if errors == 0 and all(kind.latencies for kind in kinds) else 1


if __name__ == "__main__":
    sys.exit(main())
