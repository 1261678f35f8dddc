"""cardsms benchmarks (docs/performance.md) (`make bench`): every figure with the baseline it is compared to in the same
run. Prints a table and writes bench/results.json. Loopback only; bounded in count and time.

Sections (select with BENCH_ONLY=import,task,peer,jasmin,smpp,cmpp,mm7,api,frequency,links,workers):
- import   parse + validate + de-duplicate 500,000 numbers (CSV, zipped CSV, XLSX) vs csv.reader alone
- task     a card mass task end to end on the embedded default (SQLite, simulated SMSC and phones):
           time to first submit, msg/s to all submitted and to all receipts, peak RSS of the server
- api      SendCardSms over HTTP with signatures (bench/httpload.py, a separate process): the highest
           request rate, and p50/p99 latency at fixed rates, vs /healthz driven the same way
- frequency SendSms and SendCardSms closed loop with frequency control on vs off (CARDSMS_FREQUENCY_CONTROL),
           alternating servers on, off, on, off; one new number per request
- links    short-link opens per second (card page, vendor JSON) vs /healthz on the same server
- workers  PostgreSQL: 1 worker vs 2 workers on the same 20,000 messages (scaling ratio)
- peer     the task's numbers and SMS text through Kannel (Debian's bearerbox + smsbox; HTTP sendsms with
           100 recipients per request, SMPP to the same simulated SMSC, window 100, receipts on):
           cardsms's end-to-end msg/s divided by Kannel's
- jasmin   the first BENCH_JASMIN_NUMBERS (2,000) of those numbers, the same text, through Jasmin 0.11.0 (its HTTP
           API, one number per request, SMPP to the same simulated SMSC, one bind, DLR callbacks; RabbitMQ and
           Redis started in the bench's temporary directory): cardsms's and Kannel's msg/s divided by Jasmin's
- smpp     the SMPP path alone, no database: the connector and the simulated SMSC in one process (as
           the embedded default runs them) vs the simulator in its own process (as Kannel's run had it)
- cmpp     the CMPP 3.0 path alone like the SMPP one (vs SMPP measured the same way in the same run), and
           a card task end to end over CMPP to the simulated ISMG in its own process (vs the same task over
           SMPP to the simulated SMSC, same numbers, same process layout)
- mm7      the MM7 path alone (a text and a 10 KB picture per message, one link, concurrency 8, the
           simulated MMSC in its own process, every delivery report back) vs the SMPP link measured the
           same way in the same run
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import new_tenant  # noqa: E402
from tests.harness import (  # noqa: E402
    PostgresServer,
    Server,
    cardsms_env,
    cli,
    free_port,
    port_open,
    running_server,
    stop_process,
)
from tests.integration.helpers import approved_sign, b64, png, text_template  # noqa: E402

RESULTS: dict[str, Any] = {}
TASK: dict[str, Any] = {}  # the task section's figures, which the peer section compares against
WINDOW = "100"  # the SMPP window of both cardsms and Kannel
ROWS: list[tuple[str, str, str, str]] = []  # (figure, value, baseline, ratio)


def record(section: str, name: str, value: float, unit: str, baseline: float | None = None,
           baseline_name: str = "", higher_is_better: bool = True) -> None:
    entry: dict[str, Any] = {"value": round(value, 3), "unit": unit}
    ratio = ""
    if baseline:
        entry.update(baseline=round(baseline, 3), baseline_name=baseline_name)
        r = value / baseline if higher_is_better else baseline / value
        entry["ratio"] = round(r, 3)
        ratio = f"{r:.2f}x"
    RESULTS.setdefault(section, {})[name] = entry
    ROWS.append((f"{section}.{name}", f"{value:,.2f} {unit}",
                 f"{baseline:,.2f} ({baseline_name})" if baseline else "", ratio))
    print(f"  {section}.{name}: {value:,.2f} {unit}" + (f"  vs {baseline_name} {baseline:,.2f} -> {ratio}"
                                                        if baseline else ""), flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --- import ---------------------------------------------------------------------------------------

def numbers_csv(n: int) -> bytes:
    out = io.StringIO()
    out.write("phone,name\n")
    for i in range(n):
        if i % 100 == 50:
            out.write(f"12{i},bad\n")  # 1% invalid
        elif i % 100 == 75:
            out.write("13500000000,dup\n")  # 1% duplicates
        else:
            out.write(f"{13600000000 + i},n{i % 97}\n")
    return out.getvalue().encode()


def bench_import(tmp: Path) -> None:
    from cardsms.services import imports

    data = numbers_csv(500_000)
    files = {"csv": tmp / "n.csv", "zip": tmp / "n.zip", "gzip": tmp / "n.csv.gz"}
    files["csv"].write_bytes(data)
    with zipfile.ZipFile(files["zip"], "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("n.csv", data)
    files["gzip"].write_bytes(gzip.compress(data))
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet()
    for line in data.decode().splitlines():
        ws.append(line.split(","))
    files["xlsx"] = tmp / "n.xlsx"
    wb.save(files["xlsx"])

    def baseline() -> int:
        with files["csv"].open(newline="") as fh:
            return sum(1 for _ in csv.reader(fh))

    base_s, _ = timed(baseline)
    for kind, path in files.items():
        def parse(path: Path = path) -> tuple[int, int]:
            # as an upload is read: a workbook first becomes CSV in a limited child process (a copy: that step
            # removes the file it converts)
            path = imports.prepare_upload(Path(shutil.copy(path, path.with_suffix(".upload"))))
            columns, _count = imports.prescan(path)
            rows = imports.iter_rows(path)
            next(rows)  # header
            good = bad = 0
            seen: set[str] = set()  # the import de-duplicates in the database; here a set stands in
            while True:
                g, b, used = imports._parse_chunk(rows, 1, columns or [], imports.CHUNK)
                if not used:
                    break
                good += len(g)
                bad += len(b)
                seen.update(p for _, p, _ in g)
            return len(seen), bad

        seconds, (kept, bad) = timed(parse)
        assert kept == 490_001 and bad == 5000, (kind, kept, bad)
        record("import", f"{kind}_500k_seconds", seconds, "s", base_s, "csv.reader pass over the CSV",
               higher_is_better=False)


# --- embedded server helpers ----------------------------------------------------------------------

def rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sqlite_scalar(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.25)


@contextmanager
def embedded(tmp: Path, **extra: str) -> Iterator[Server]:
    (tmp / "serve").mkdir(parents=True, exist_ok=True)
    env = cardsms_env(tmp / "serve", "", CARDSMS_SIM_REVIEW_SECONDS="0", **extra)
    with running_server(env, "sqlite") as server:
        yield server


@contextmanager
def own_simulator(tmp: Path, kind: str, port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`cardsms simulator KIND` in a process of its own on `port` (10 ms receipts), its output in tmp/KIND.out;
    stopped on exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    with (tmp / f"{kind}.out").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", kind, "--port", str(port),
                                 "--latency-ms", "10", *args], env=cardsms_env(tmp, ""), stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            wait(lambda: port_open(port), 30, f"simulated {kind}")
            yield proc
        finally:
            stop_process(proc)


# --- task -----------------------------------------------------------------------------------------

def task_numbers() -> int:
    return int(os.environ.get("BENCH_TASK_NUMBERS", "500000"))


@contextmanager
def serving(tmp: Path, separate: bool, protocol: str = "smpp", digital: bool = False, **extra: str
            ) -> Iterator[tuple[Server, int]]:
    """`cardsms serve` (SQLite) and the pid of the simulated SMSC's own process (0 when it runs inside the
    server). With `separate`, the simulated SMSC and phones run in their own process (`cardsms simulator smsc
    --phones`), as they do for Kannel and as a real SMSC and real phones would; with protocol "cmpp" that is
    the simulated ISMG (`cardsms simulator ismg`), and the server connects over CMPP 3.0."""
    tmp.mkdir(parents=True, exist_ok=True)
    settings = {"CARDSMS_SMSC_WINDOW": WINDOW, "CARDSMS_SIM_SMSC_LATENCY_MS": "10", "CARDSMS_SIM_REVIEW_SECONDS": "0",
                **extra}
    with ExitStack() as stack:
        port = free_port()
        smsc_pid = 0
        if separate:
            smsc_port = free_port()
            env = cardsms_env(tmp, "", **{k: v for k, v in settings.items() if k.startswith("CARDSMS_SIM_")})
            log = stack.enter_context((tmp / "smsc.out").open("ab"))
            kind = "ismg" if protocol == "cmpp" else "smsc"
            smsc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", kind, "--port", str(smsc_port),
                                     "--latency-ms", "10", "--phones", f"http://127.0.0.1:{port}/s"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop_process, smsc)
            smsc_pid = smsc.pid
            wait(lambda: port_open(smsc_port), 30, "simulated SMSC")
            url = (f"cmpp://901234:pw@127.0.0.1:{smsc_port}?version=3.0&src_id=1069" if protocol == "cmpp"
                   else f"smpp://cardsms:pw@127.0.0.1:{smsc_port}")
            settings["CARDSMS_SMSC"] = json.dumps([url])
        if digital:  # the digital fallback over MM7 to the simulated MMSC in its own process
            mmsc_port = free_port()
            mmsc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", "mmsc", "--port", str(mmsc_port),
                                     "--latency-ms", "10", "--report-url", f"http://127.0.0.1:{port}/mm7/mm7-1",
                                     "--report-user", "bench", "--report-secret", "bench"],
                                    env=cardsms_env(tmp, ""), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(stop_process, mmsc)
            wait(lambda: port_open(mmsc_port), 30, "simulated MMSC")
            settings["CARDSMS_DIGITAL"] = json.dumps([f"mm7://bench:bench@127.0.0.1:{mmsc_port}/mm7?service_code=1069"])
        (tmp / "serve").mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(running_server(cardsms_env(tmp / "serve", "", **settings), "sqlite", port=port))
        yield server, smsc_pid


def run_task(tmp: Path, n: int, separate: bool, protocol: str = "smpp", fallback: str = "NONE") -> dict[str, float]:
    """A card mass task of n numbers until every message has its final state (see `serving`); the numbers
    whose phones show no card get nothing (NONE), a text (SMS) or a digital message over MM7 (DIGITALSMS)."""
    tmp.mkdir(parents=True, exist_ok=True)
    numbers = tmp / "task.txt.gz"  # an upload may be at most 3 MB: 500,000 numbers go compressed
    numbers.write_bytes(gzip.compress(("\n".join(str(13700000000 + i) for i in range(n)) + "\n").encode()))
    with serving(tmp, separate, protocol, digital=fallback == "DIGITALSMS") as (server, smsc_pid):
        tenant = new_tenant(server)
        client = tenant.client()
        sign = approved_sign(client, "压测")
        fallback_args: list[str] = []
        if fallback == "SMS":
            text = text_template(client, "您有一条新消息，详情见店铺首页。")
            fallback_args = ["--fallback", "SMS", "--fallback-template", text]
        elif fallback == "DIGITALSMS":
            from alibabacloud_dysmsapi20170525 import models as m

            part, picture = "您有一条新消息，详情见图。".encode(), png(320, 180)
            code = client.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
                template_name="压测", remark="bench", template_contents=[
                    m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(part), file_name="正文",
                                                                      file_size=len(part), file_suffix="txt"),
                    m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(picture), file_name="图",
                                                                      file_size=len(picture), file_suffix="png"),
                ])).body.template_code
            fallback_args = ["--fallback", "DIGITALSMS", "--fallback-template", code]
        db = Path(server.env["CARDSMS_DATA_DIR"]) / "cardsms.db"
        t0 = time.monotonic()
        cli(server.env, "task", "create", "--account", tenant.name, "--name", "bench", "--sign", sign,
            "--template", "PUB_SERVICE_NOTICE", "--file", str(numbers), *fallback_args)
        wait(lambda: (sqlite_scalar(db, "SELECT count(*) FROM messages WHERE submitted_at IS NOT NULL") or 0) > 0,
             300, "first submit")
        first = time.monotonic() - t0
        wait(lambda: sqlite_scalar(db, "SELECT state FROM tasks") == "completed", 3600, "all submitted")
        submitted_s = time.monotonic() - t0
        done = ("SELECT count(*) FROM messages WHERE task_id IS NOT NULL "
                "AND state IN ('delivered', 'failed', 'expired', 'skipped')")
        still_open = ("SELECT count(*) FROM messages WHERE task_id IS NOT NULL "  # a fallback leg counts too
                      "AND state NOT IN ('delivered', 'failed', 'expired', 'skipped')")
        wait(lambda: sqlite_scalar(db, done) >= n and sqlite_scalar(db, still_open) == 0, 3600, "all receipts")
        receipts_s = time.monotonic() - t0
        failed = sqlite_scalar(db, "SELECT count(*) FROM messages WHERE task_id IS NOT NULL "
                                   "AND state IN ('failed', 'expired')")
        assert failed == 0, f"{failed} messages of the task failed"
        rendered = sqlite_scalar(db, "SELECT count(*) FROM messages WHERE render_status = 1")
        rss = rss_peak_mb(server.proc.pid)
        TASK["text"] = sqlite_scalar(db, "SELECT content FROM messages WHERE task_id IS NOT NULL LIMIT 1")
        smsc_rss = rss_peak_mb(smsc_pid) if smsc_pid else 0.0
    return {"first": first, "submitted_s": submitted_s, "receipts_s": receipts_s, "rss": rss, "smsc_rss": smsc_rss,
            "rendered": rendered}


def bench_task(tmp: Path) -> None:
    n = task_numbers()
    own = run_task(tmp / "separate", n, separate=True)
    TASK["numbers"], TASK["msg_per_s"], TASK["rss"] = n, n / own["receipts_s"], own["rss"]
    TASK["seconds"] = own["receipts_s"]
    record("task", f"time_to_first_submit_{n}", own["first"], "s")
    record("task", f"submitted_msg_per_s_{n}", n / own["submitted_s"], "msg/s")
    record("task", f"end_to_end_msg_per_s_{n}", n / own["receipts_s"], "msg/s")
    record("task", f"end_to_end_seconds_{n}", own["receipts_s"], "s")
    record("task", "cards_rendered", own["rendered"], "messages")
    record("task", "server_peak_rss", own["rss"], "MB")
    if os.environ.get("BENCH_TASK_ONE_PROCESS", "1") != "0":
        one = run_task(tmp / "one", n, separate=False)
        record("task", f"one_process_end_to_end_msg_per_s_{n}", n / one["receipts_s"], "msg/s",
               n / own["receipts_s"], "SMSC and phones in their own process")
        record("task", "one_process_server_peak_rss", one["rss"], "MB")


# --- links ----------------------------------------------------------------------------------------

def load(urls: list[str], *headers: str, seconds: int = 8, connections: int = 64) -> dict[str, Any]:
    """Drive the URLs round-robin with wrk (a separate process, Debian's package) and read its figures."""
    assert all(u.startswith("http://127.0.0.1:") for u in urls), "load only on loopback"
    base = urls[0].split("/", 3)
    paths = ["/" + u.split("/", 3)[3] for u in urls]
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    hdrs = "".join(f'wrk.headers["{h.split(": ", 1)[0]}"] = "{h.split(": ", 1)[1]}"\n' for h in headers)
    script.write_text(hdrs + "paths = {" + ",".join(json.dumps(p) for p in paths) + "}\n"
                      "i = 0\nrequest = function()\n  i = i % #paths + 1\n"
                      "  return wrk.format(nil, paths[i])\nend\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"{base[0]}//{base[2]}"], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    script.unlink()

    def ms(label: str) -> float:
        value = next(line.split()[1] for line in out.splitlines() if line.strip().startswith(label))
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
        return float(value[: -len(unit)]) * scale[unit]

    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    errors = sum(int(x) for line in out.splitlines() if "Non-2xx" in line for x in line.split()[-1:])
    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": errors}


def bench_links(tmp: Path) -> None:
    numbers = tmp / "links.txt"
    numbers.write_text("\n".join(str(13800000000 + i) for i in range(2000)) + "\n")
    # wrk opens 500 links from one address thousands of times a second: every open is recorded, as it was before
    # the per-address open limit (CARDSMS_LINK_OPENS_PER_MINUTE), so the figure still measures the write path
    with embedded(tmp, CARDSMS_SIM_OPEN_SHARE="0", CARDSMS_LINK_OPENS_PER_MINUTE="0") as server:
        tenant = new_tenant(server)
        sign = approved_sign(tenant.client(), "链接")
        cli(server.env, "task", "create", "--account", tenant.name, "--name", "links", "--sign", sign,
            "--template", "PUB_ORDER_SHIPPED", "--file", str(numbers), "--wait")
        db = Path(server.env["CARDSMS_DATA_DIR"]) / "cardsms.db"
        conn = sqlite3.connect(db)
        codes = [r[0] for r in conn.execute("SELECT code FROM short_links LIMIT 500")]
        conn.close()
        urls = [f"{server.url}/s/{c}" for c in codes]
        base = load([f"{server.url}/healthz"])
        page = load(urls, "User-Agent: Mozilla/5.0 (Linux; Android 14) Mobile")
        vendor = load(urls, "X-Card-Parser: HuaWei", "Accept: application/json")
    for name, r in (("card_page", page), ("vendor_json", vendor)):
        record("links", f"{name}_opens_per_s", r["rps"], "req/s", base["rps"], "/healthz on the same server")
        record("links", f"{name}_p99", r["p99_ms"], "ms")


# --- api: SendCardSms over HTTP --------------------------------------------------------------------

def httpload(server: Server, tenant: Any, params: dict[str, str], mode: str, first_mobile: int = 0,
             rate: int = 0, seconds: int = 8, path: str = "") -> dict[str, Any]:
    args = [sys.executable, str(ROOT / "bench" / "httpload.py"), "--port", str(server.port), "--mode", mode,
            "--seconds", str(seconds), "--count", str(max(rate, 5000) * seconds)]
    if path:
        args += ["--path", path]
    else:
        args += ["--key", tenant.key_id, "--secret", tenant.secret, "--params", json.dumps(params),
                 "--first-mobile", str(first_mobile)]
    if rate:
        args += ["--rate", str(rate)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 300)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["errors"] == 0, result
    return result


def bench_api(tmp: Path) -> None:
    """SendCardSms from bench/httpload.py in its own process: closed loop on 32 connections, then open loop at
    fixed rates (25 req/s: latency unloaded; 1,000 req/s: the target). The simulated SMSC and phones run in
    their own process (`serving`); the closed loop is repeated with them inside the server for reference."""
    rates = [int(r) for r in os.environ.get("BENCH_API_RATES", "25,1000").split(",")]
    extra = {"CARDSMS_API_QPS": "1000000", "CARDSMS_SIM_OPEN_SHARE": "0"}

    def closed_loop(server: Server) -> tuple[Any, Any, dict[str, str], dict[str, Any]]:
        tenant = new_tenant(server)
        sign = approved_sign(tenant.client(), "接口")
        params = {"Action": "SendCardSms", "SignName": sign, "CardTemplateCode": "PUB_SERVICE_NOTICE"}
        health = httpload(server, tenant, {}, "max", path="/healthz")
        return tenant, health, params, httpload(server, tenant, params, "max", 13100000000)

    with serving(tmp / "separate", True, **extra) as (server, _):
        tenant, health, params, top = closed_loop(server)
        fixed = {r: httpload(server, tenant, params, "rate", 13200000000 + r * 100_000, rate=r, seconds=3)
                 for r in rates}
    with serving(tmp / "one", False, **extra) as (server, _):
        one = closed_loop(server)[3]
    record("api", "send_card_sms_max_req_per_s", top["rps"], "req/s", health["rps"], "/healthz, same load process")
    bench_api_processes(tmp, extra, top)
    record("api", "send_card_sms_max_p99", top["p99_ms"], "ms")
    for r, res in fixed.items():
        record("api", f"send_card_sms_at_{r}_per_s_p50", res["p50_ms"], "ms")
        record("api", f"send_card_sms_at_{r}_per_s_p99", res["p99_ms"], "ms")
        record("api", f"send_card_sms_at_{r}_per_s_achieved", res["rps"], "req/s", r, "offered rate")
    record("api", "one_process_send_card_sms_max_req_per_s", one["rps"], "req/s", top["rps"],
           "SMSC and phones in their own process")


def bench_api_processes(tmp: Path, extra: dict[str, str], one: dict[str, Any]) -> None:
    """The closed loop and the 1,000 req/s open loop with `serve --http-processes N` (BENCH_HTTP_PROCESSES,
    default 2,3), against the one-process figures of the same run; SendSms one number closed loop beside it."""
    counts = [int(n) for n in os.environ.get("BENCH_HTTP_PROCESSES", "2,3").split(",") if n]
    for n in counts:
        with serving(tmp / f"http{n}", True, **extra, CARDSMS_HTTP_PROCESSES=str(n)) as (server, _):
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "接口")
            params = {"Action": "SendCardSms", "SignName": sign, "CardTemplateCode": "PUB_SERVICE_NOTICE"}
            top = httpload(server, tenant, params, "max", 13300000000 + n * 1_000_000)
            fixed = httpload(server, tenant, params, "rate", 13400000000 + n * 1_000_000, rate=1000, seconds=3)
            text = {"Action": "SendSms", "SignName": sign, "TemplateCode": text_template(c, "您的订单已发货。")}
            sms = httpload(server, tenant, text, "max", 13500000000 + n * 1_000_000)
        record("api", f"http_processes_{n}_send_card_sms_max_req_per_s", top["rps"], "req/s", one["rps"],
               "one HTTP process, same run")
        record("api", f"http_processes_{n}_send_card_sms_max_p99", top["p99_ms"], "ms")
        record("api", f"http_processes_{n}_send_card_sms_at_1000_per_s_p99", fixed["p99_ms"], "ms")
        record("api", f"http_processes_{n}_send_card_sms_at_1000_per_s_achieved", fixed["rps"], "req/s", 1000,
               "offered rate")
        record("api", f"http_processes_{n}_send_sms_max_req_per_s", sms["rps"], "req/s", one["rps"],
               "SendCardSms, one HTTP process, same run")


# --- frequency: the cost of frequency control ------------------------------------------------------------

def bench_frequency(tmp: Path) -> None:
    """SendSms and SendCardSms closed loop (bench/httpload.py, 32 connections, one new number per request) with
    frequency control on and off (CARDSMS_FREQUENCY_CONTROL), alternating on, off, on, off with a server each
    (same process layout as `api`): the median of each pair's ratio."""
    rounds = int(os.environ.get("BENCH_FREQUENCY_ROUNDS", "2"))
    figures: dict[tuple[str, bool], list[float]] = {}
    first = 13000000000
    for i in range(rounds):
        for on in (True, False):
            extra = {"CARDSMS_API_QPS": "1000000", "CARDSMS_SIM_OPEN_SHARE": "0",
                     "CARDSMS_FREQUENCY_CONTROL": "true" if on else "false"}
            with serving(tmp / f"{i}-{on}", True, **extra) as (server, _):
                tenant = new_tenant(server)
                client = tenant.client()
                sign = approved_sign(client, "频控压测")
                notice = text_template(client, "您的订单已发货，请注意查收。")
                for action, params in (("SendSms", {"Action": "SendSms", "SignName": sign, "TemplateCode": notice}),
                                       ("SendCardSms", {"Action": "SendCardSms", "SignName": sign,
                                                        "CardTemplateCode": "PUB_SERVICE_NOTICE"})):
                    first += 1_000_000
                    figures.setdefault((action, on), []).append(httpload(server, tenant, params, "max", first)["rps"])
    for action in ("SendSms", "SendCardSms"):
        on, off = figures[(action, True)], figures[(action, False)]
        record("frequency", f"{action}_req_per_s_rules_on", statistics.median(on), "req/s", statistics.median(off),
               "the same with frequency control off, alternating runs")
        print(f"  {action}: on {on} off {off} req/s; pair ratios "
              f"{[round(a / b, 3) for a, b in zip(on, off, strict=True)]}")


# --- workers (PostgreSQL) -------------------------------------------------------------------------

@contextmanager
def pg_counter(url: str) -> Iterator[Callable[[str], int]]:
    """`count(sql)` over one connection kept for the whole run (polled every 0.25 s while workers send)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    loop = asyncio.new_event_loop()
    engine = create_async_engine(url, pool_size=1, max_overflow=0)

    async def count(sql: str) -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(sql)) or 0)

    try:
        yield lambda sql: loop.run_until_complete(count(sql))
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()


def run_workers(pg: PostgresServer, tmp: Path, k: int, n: int, bind_tps: int = 0) -> float:
    """msg/s of n messages sent with SendSms through k workers, each with a bind of its own. With bind_tps, the
    simulated SMSC accepts that many submits per second and bind (a real SMSC's contract; more are answered
    ESME_RTHROTTLED) and each connector is configured to that rate, so the queue, not the CPU, sets the pace."""
    from alibabacloud_dysmsapi20170525 import models as m

    from cardsms.settings import Settings

    name = f"{k}_{bind_tps}"
    url = pg.create_database(f"bench_workers_{name}_{os.getpid()}")
    env = cardsms_env(tmp / f"api{name}", url, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_WORKER_LEASE_SECONDS="5",
                      CARDSMS_SMSC_TPS=str(bind_tps))
    cli(env, "migrate")
    sa_url = Settings(_env_file=None, data_dir=tmp, database_url=url).sqlalchemy_url
    smsc_port, api_port = free_port(), free_port()
    smsc = f"smpp://bench:pw@127.0.0.1:{smsc_port}?binds={k}"
    with ExitStack() as stack:
        pg_count = stack.enter_context(pg_counter(sa_url))

        def start(args: list[str], e: dict[str, str], name: str) -> subprocess.Popen[bytes]:
            log = stack.enter_context((tmp / f"{name}.log").open("ab"))
            proc = subprocess.Popen([sys.executable, "-m", "cardsms", *args], env=e, stdout=log,
                                    stderr=subprocess.STDOUT)
            stack.callback(stop_process, proc)
            return proc

        start(["simulator", "smsc", "--port", str(smsc_port), "--latency-ms", "10", "--bind-tps", str(bind_tps)],
              env, f"smsc{name}")
        api = start(["api", "--port", str(api_port)], env, f"api{name}")
        for i in range(k):
            wenv = {**env, "CARDSMS_DATA_DIR": str(tmp / f"w{name}-{i}")}
            start(["worker", "--smsc", smsc], wenv, f"worker{name}-{i}")
        wait(lambda: pg_count("SELECT count(*) FROM bind_leases") == k, 60, "binds")
        server = Server(api_port, env, api, "postgresql")
        wait(lambda: subprocess.run(["curl", "-sf", f"{server.url}/healthz"], capture_output=True).returncode == 0,
             60, "api")
        tenant = new_tenant(server)
        client = tenant.client()
        sign = approved_sign(client, "扩展")
        code = text_template(client, "Your parcel has shipped")
        t0 = time.monotonic()
        for start_at in range(0, n, 1000):
            phones = ",".join(str(13900000000 + i) for i in range(start_at, start_at + 1000))
            client.send_sms(m.SendSmsRequest(phone_numbers=phones, sign_name=sign, template_code=code))
        wait(lambda: pg_count("SELECT count(*) FROM messages WHERE state IN ('queued','submitting')") == 0,
             600, "all submitted")
        return n / (time.monotonic() - t0)


def bench_workers(tmp: Path) -> None:
    n = int(os.environ.get("BENCH_WORKER_MESSAGES", "20000"))
    pg = PostgresServer()
    pg.start()
    bind_tps = int(os.environ.get("BENCH_BIND_TPS", "1000"))
    try:
        one_bound = run_workers(pg, tmp, 1, n, bind_tps)
        two_bound = run_workers(pg, tmp, 2, n, bind_tps)
        one = run_workers(pg, tmp, 1, n)
        two = run_workers(pg, tmp, 2, n)
    finally:
        pg.stop()
    record("workers", f"one_worker_bind_limited_msg_per_s_{n}", one_bound, "msg/s", bind_tps, "the bind's limit")
    record("workers", f"two_workers_bind_limited_msg_per_s_{n}", two_bound, "msg/s", one_bound, "one worker")
    record("workers", f"one_worker_msg_per_s_{n}", one, "msg/s")
    record("workers", f"two_workers_msg_per_s_{n}", two, "msg/s", one, "one worker (CPU-bound on 2 cores)")


# --- peer: Kannel ---------------------------------------------------------------------------------

KANNEL_CONF = """
group = core
admin-port = {admin}
admin-password = bench
status-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
box-allow-ip = "127.0.0.1"
log-file = "{tmp}/bearerbox.log"
log-level = 2
dlr-storage = internal

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc}
transceiver-mode = true
smsc-username = kannel
smsc-password = pw
system-type = "VMA"
max-pending-submits = {window}
log-level = 2

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
log-file = "{tmp}/smsbox.log"
log-level = 2

group = sendsms-user
username = bench
password = bench
max-messages = 10
concatenation = true
"""


def kannel_status(admin: int) -> tuple[int, int]:
    """(SMS sent to the SMSC, receipts received from it) off bearerbox's status page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status.xml?password=bench", timeout=10) as r:
        xml = r.read().decode()
    sent = re.search(r"<sms>.*?<sent><total>(\d+)", xml, re.S)
    dlr = re.search(r"<dlr>\s*<received><total>(\d+)", xml)
    assert sent and dlr, xml[:500]
    return int(sent.group(1)), int(dlr.group(1))


async def kannel_send(port: int, numbers: list[str], text: str, concurrency: int = 8) -> None:
    import aiohttp

    batches = [numbers[i:i + 100] for i in range(0, len(numbers), 100)]  # sendsms: up to 100 recipients
    url = f"http://127.0.0.1:{port}/cgi-bin/sendsms"
    async with aiohttp.ClientSession() as session:
        async def sender(mine: list[list[str]]) -> None:
            for batch in mine:
                params = {"username": "bench", "password": "bench", "from": "10690000", "to": " ".join(batch),
                          "text": text, "charset": "UTF-8", "coding": "2", "dlr-mask": "3"}
                async with session.get(url, params=params) as resp:
                    body = await resp.text()
                    assert resp.status in (200, 202), (resp.status, body)

        await asyncio.gather(*(sender(batches[i::concurrency]) for i in range(concurrency)))


def bench_peer(tmp: Path) -> None:
    n = int(TASK.get("numbers") or task_numbers())
    text = TASK.get("text") or "【压测】您有一条服务通知，点击查看 http://127.0.0.1:8080/s/Ab3dE6gH 拒收请回复R"
    ports = {"admin": free_port(), "box": free_port(), "sendsms": free_port(), "smsc": free_port()}
    (tmp / "kannel.conf").write_text(KANNEL_CONF.format(tmp=tmp, window=WINDOW, **ports))
    env = cardsms_env(tmp, "")
    with ExitStack() as stack:
        def start(args: list[str], name: str) -> subprocess.Popen[bytes]:
            log = stack.enter_context((tmp / f"{name}.out").open("ab"))
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop_process, proc)
            return proc

        start([sys.executable, "-m", "cardsms", "simulator", "smsc", "--port", str(ports["smsc"]),
               "--latency-ms", "10"], "smsc")
        wait(lambda: port_open(ports["smsc"]), 30, "simulated SMSC")
        bearerbox = start(["bearerbox", str(tmp / "kannel.conf")], "bearerbox")
        wait(lambda: port_open(ports["admin"]), 30, "bearerbox")
        smsbox = start(["smsbox", str(tmp / "kannel.conf")], "smsbox")
        wait(lambda: port_open(ports["sendsms"]), 30, "smsbox")
        numbers = [str(13700000000 + i) for i in range(n)]
        t0 = time.monotonic()
        asyncio.run(kannel_send(ports["sendsms"], numbers, text))
        accepted_s = time.monotonic() - t0
        wait(lambda: kannel_status(ports["admin"])[1] >= n, 3600, "Kannel receipts")
        kannel_s = time.monotonic() - t0
        kannel_rss = rss_peak_mb(bearerbox.pid) + rss_peak_mb(smsbox.pid)
    record("peer", f"kannel_accepted_msg_per_s_{n}", n / accepted_s, "msg/s")
    record("peer", f"kannel_end_to_end_msg_per_s_{n}", n / kannel_s, "msg/s")
    TASK["kannel"] = n / kannel_s
    if TASK.get("msg_per_s"):
        record("peer", f"cardsms_end_to_end_msg_per_s_{n}", TASK["msg_per_s"], "msg/s", n / kannel_s,
               "Kannel end to end, same numbers and text")
        record("peer", "cardsms_peak_rss", TASK["rss"], "MB", kannel_rss, "Kannel bearerbox + smsbox peak RSS",
               higher_is_better=False)


def _jasmin_run(tmp: Path, numbers: list[str], text: str, nodelay: bool) -> tuple[float, float, float]:
    """One Jasmin run (bench/jasmin.py) against its own simulated SMSC: (seconds to accept every request, seconds to
    every final receipt, peak RSS of jasmind + RabbitMQ + Redis in MB)."""
    from bench.jasmin import running_jasmin, send_and_count

    smsc_port = free_port()
    with own_simulator(tmp, "smsc", smsc_port), running_jasmin(tmp / "jasmin", nodelay=nodelay) as jasmin:
        jasmin.connect(smsc_port)
        accepted_s, end_s, not_delivered = asyncio.run(send_and_count(jasmin, numbers, text, free_port()))
        rss = sum(rss_peak_mb(pid) for pid in jasmin.pids.values())
    assert not_delivered == 0, f"{not_delivered} of Jasmin's receipts were not DELIVRD"
    return accepted_s, end_s, rss


def bench_jasmin(tmp: Path) -> None:
    """Jasmin 0.11.0 on the first BENCH_JASMIN_NUMBERS of the task's numbers, the same text, the same simulated SMSC
    in its own process, one bind as Kannel has; end to end until every final receipt has come back to the DLR
    callback. Jasmin takes one number per HTTP request and keeps one submit in flight per connector (it consumes its
    AMQP queue with prefetch 1), so its rate is measured on fewer numbers than the task's. Run as installed, then
    with TCP_NODELAY on its sockets (BENCH_JASMIN_NODELAY=0 skips that); the faster is the baseline."""
    from bench.jasmin import JASMIN_VERSION

    n = int(os.environ.get("BENCH_JASMIN_NUMBERS", "2000"))
    text = TASK.get("text") or "【压测】您有一条服务通知，点击查看 http://127.0.0.1:8080/s/Ab3dE6gH 拒收请回复R"
    numbers = [str(13700000000 + i) for i in range(n)]
    RESULTS.setdefault("jasmin", {})["version"] = JASMIN_VERSION
    best = 0.0
    for nodelay in (False, True) if os.environ.get("BENCH_JASMIN_NODELAY", "1") != "0" else (False,):
        name = "jasmin_nodelay" if nodelay else "jasmin"
        accepted_s, end_s, rss = _jasmin_run(tmp / name, numbers, text, nodelay)
        record("jasmin", f"{name}_accepted_msg_per_s_{n}", n / accepted_s, "msg/s")
        record("jasmin", f"{name}_end_to_end_msg_per_s_{n}", n / end_s, "msg/s")
        record("jasmin", f"{name}_peak_rss", rss, "MB")
        best = max(best, n / end_s)
    RESULTS["jasmin"]["best_end_to_end_msg_per_s"] = best
    TASK["jasmin"] = best
    if TASK.get("msg_per_s"):
        record("jasmin", f"cardsms_end_to_end_msg_per_s_{TASK.get('numbers') or task_numbers()}", TASK["msg_per_s"],
               "msg/s", best, f"Jasmin's best end to end, the first {n:,} of the same numbers, same text")
    if TASK.get("kannel"):
        record("jasmin", "kannel_over_jasmin_end_to_end", TASK["kannel"], "msg/s", best,
               "Jasmin's best end to end (Kannel's figure from the peer section)")


# --- smpp: the SMPP path alone ----------------------------------------------------------------------

async def _smpp_run(n: int, port: int | None, protocol: str = "smpp") -> float:
    """msg/s of n submits through one connector (window 100) until every receipt arrived: against an
    in-process simulated SMSC (port None) or one listening on `port` in another process. No database.
    protocol "cmpp": a CmppConnector (CMPP 3.0) and the simulated ISMG instead."""
    from cardsms.delivery.connector import Inbound
    from cardsms.delivery.runtime import open_connector
    from cardsms.domain.connectors import ConnectorConfig
    from cardsms.simulator.network import CENTRES
    from cardsms.simulator.smsc import SmscOptions

    sim = None
    if port is None:
        sim = CENTRES[protocol](SmscOptions(latency_ms=10))
        await sim.start()
        port = sim.port
    got = 0

    def count(_: Inbound) -> None:  # a connector's on_inbound is called, not awaited (it journals, then acks)
        nonlocal got
        got += 1

    system_id = "901234" if protocol == "cmpp" else "cardsms"
    connector = open_connector(ConnectorConfig(name="bench", host="127.0.0.1", port=port, system_id=system_id,
                                               password="bench", window=int(WINDOW), tps=0, protocol=protocol),
                               "1069", count)
    runner = asyncio.create_task(connector.run())
    deadline = time.monotonic() + 30
    while not connector.up:
        assert time.monotonic() < deadline, "the connector did not bind"
        await asyncio.sleep(0.05)
    text = "【压测】您有一条新消息 http://127.0.0.1:8080/s/abcdefgh 拒收请回复R"
    t0 = time.monotonic()
    for first in range(0, n, 500):  # as the dispatcher submits a claimed batch
        await asyncio.gather(*(connector.submit(f"+86139{i:08d}", text) for i in range(first, min(n, first + 500))))
    while got < n:
        assert time.monotonic() - t0 < 300, f"only {got} of {n} receipts"
        await asyncio.sleep(0.01)
    rate = n / (time.monotonic() - t0)
    await connector.stop()
    await asyncio.wait_for(runner, 30)  # run() returns once the I/O thread has ended
    if sim is not None:
        await sim.stop()
    return rate


def link_rates(tmp: Path, n: int, protocol: str) -> tuple[float, float]:
    """(msg/s with the simulator in the connector's process, msg/s with it in a process of its own)."""

    def measure(port: int | None) -> float:  # each in a fresh process, like the server runs it
        code = (f"import asyncio, sys; sys.path.insert(0, {str(ROOT)!r}); from bench.run import _smpp_run; "
                f"print(asyncio.run(_smpp_run({n}, {port!r}, {protocol!r})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        return float(out.stdout.strip().splitlines()[-1])

    in_process = measure(None)
    port = free_port()
    with own_simulator(tmp, "ismg" if protocol == "cmpp" else "smsc", port):
        separate = measure(port)
    return in_process, separate


def bench_smpp(tmp: Path) -> None:
    """The ceiling the SMPP stack puts on the embedded default: the connector and the simulated SMSC
    in one process (as `cardsms serve` runs them), vs the simulator in a process of its own (as Kannel got)."""
    n = int(os.environ.get("BENCH_SMPP_MESSAGES", "20000"))
    in_process, separate = link_rates(tmp, n, "smpp")
    record("smpp", f"one_process_msg_per_s_{n}", in_process, "msg/s", separate,
           "simulated SMSC in its own process")
    record("smpp", f"separate_smsc_msg_per_s_{n}", separate, "msg/s", TASK.get("kannel") or None,
           "Kannel end to end (peer section)")


def bench_cmpp(tmp: Path) -> None:
    """The CMPP 3.0 path measured like the SMPP one, each against SMPP measured the same way in this run: the
    link alone (connector and simulator, no database), and a card task end to end over the link."""
    n = int(os.environ.get("BENCH_SMPP_MESSAGES", "20000"))
    smpp_one, smpp_separate = link_rates(tmp / "smpp", n, "smpp")
    cmpp_one, cmpp_separate = link_rates(tmp / "cmpp", n, "cmpp")
    record("cmpp", f"one_process_msg_per_s_{n}", cmpp_one, "msg/s", smpp_one, "SMPP, connector and SMSC alike")
    record("cmpp", f"separate_ismg_msg_per_s_{n}", cmpp_separate, "msg/s", smpp_separate,
           "SMPP, simulated SMSC in its own process")
    tasks = int(os.environ.get("BENCH_CMPP_TASK_NUMBERS", "100000"))
    over_smpp = run_task(tmp / "task-smpp", tasks, separate=True)
    over_cmpp = run_task(tmp / "task-cmpp", tasks, separate=True, protocol="cmpp")
    record("cmpp", f"task_end_to_end_msg_per_s_{tasks}", tasks / over_cmpp["receipts_s"], "msg/s",
           tasks / over_smpp["receipts_s"], "the same task over SMPP")
    record("cmpp", "task_cards_rendered", over_cmpp["rendered"], "messages", over_smpp["rendered"],
           "over SMPP")


# --- mm7: the digital path alone --------------------------------------------------------------------------

async def _mm7_run(n: int, mmsc_port: int, report_port: int) -> float:
    """msg/s of n digital messages (a text and a 10 KB picture each) through one MM7 link (concurrency 8)
    to the simulated MMSC in another process, until every delivery report came back to this process's
    inbound path (Basic authentication and the journal's place taken by a counter). No database."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from cardsms.delivery.connector import Inbound
    from cardsms.delivery.digital import DigitalContent, DigitalMessage
    from cardsms.delivery.mm7 import Mm7Link
    from cardsms.delivery.mm7_wire import Part
    from cardsms.domain.connectors import parse_digital

    got = 0

    async def count(_: Inbound) -> None:
        nonlocal got
        got += 1

    text = "您有一条新消息，详情见图。".encode()
    content = DigitalContent("压测", (Part("text/plain;charset=utf-8", text, "p1", "1.txt"),
                                     Part("image/png", bytes(range(256)) * 40, "p2", "2.png")))

    async def load(account: int, code: str) -> DigitalContent:
        return content

    (cfg,) = parse_digital([f"mm7://bench:bench@127.0.0.1:{mmsc_port}/mm7?service_code=1069"])  # concurrency 8
    link = Mm7Link(cfg, load, count)

    async def inbound(request: Request) -> Response:
        if link.authorized(request.headers.get("authorization", ""), "127.0.0.1"):
            return Response(status_code=401)
        status, ctype, body = await link.inbound(request.headers.get("content-type", ""), await request.body())
        return Response(body, status, headers={"content-type": ctype})

    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/mm7/bench", inbound, methods=["POST"])]),
                                           host="127.0.0.1", port=report_port, log_config=None, access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    t0 = time.monotonic()
    for first in range(0, n, 500):  # as the dispatcher submits a claimed batch
        await asyncio.gather(*(link.submit(DigitalMessage(f"+86139{i:08d}", 1, "SMS_1", "", None))
                               for i in range(first, min(n, first + 500))))
    while got < n:
        assert time.monotonic() - t0 < 300, f"only {got} of {n} reports"
        await asyncio.sleep(0.01)
    rate = n / (time.monotonic() - t0)
    await link.stop()
    server.should_exit = True
    await serving
    return rate


def bench_mm7(tmp: Path) -> None:
    """The digital path beside the SMPP one, each link alone with its simulator in a process of its own: MM7
    messages per second with every delivery report back, against SMPP messages per second with every receipt."""
    n = int(os.environ.get("BENCH_MM7_MESSAGES", "5000"))
    mmsc_port, report_port = free_port(), free_port()
    env = cardsms_env(tmp, "")
    proc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", "mmsc", "--port", str(mmsc_port),
                             "--latency-ms", "10", "--report-url", f"http://127.0.0.1:{report_port}/mm7/bench",
                             "--report-user", "bench", "--report-secret", "bench"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: port_open(mmsc_port), 30, "simulated MMSC")
        code = (f"import asyncio, sys; sys.path.insert(0, {str(ROOT)!r}); from bench.run import _mm7_run; "
                f"print(asyncio.run(_mm7_run({n}, {mmsc_port}, {report_port})))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        mm7 = float(out.stdout.strip().splitlines()[-1])
    finally:
        stop_process(proc)
    _, smpp_separate = link_rates(tmp / "smpp", n, "smpp")
    record("mm7", f"separate_mmsc_msg_per_s_{n}", mm7, "msg/s", smpp_separate,
           "SMPP, simulated SMSC in its own process")
    tasks = int(os.environ.get("BENCH_MM7_TASK_NUMBERS", "100000"))
    over_sms = run_task(tmp / "task-sms", tasks, separate=True, fallback="SMS")
    over_mm7 = run_task(tmp / "task-mm7", tasks, separate=True, fallback="DIGITALSMS")
    record("mm7", f"task_digital_fallback_end_to_end_msg_per_s_{tasks}", tasks / over_mm7["receipts_s"], "msg/s",
           tasks / over_sms["receipts_s"], "the same task with a text fallback")


SECTIONS = {"import": bench_import, "task": bench_task, "peer": bench_peer, "jasmin": bench_jasmin, "smpp": bench_smpp,
            "cmpp": bench_cmpp,
            "mm7": bench_mm7, "api": bench_api, "frequency": bench_frequency, "links": bench_links,
            "workers": bench_workers}


def _figure(section: str, prefix: str) -> dict[str, Any] | None:
    """The entry of RESULTS[section] whose name starts with prefix (names carry the message count)."""
    return next((v for k, v in RESULTS.get(section, {}).items() if k.startswith(prefix)), None)


Row = Callable[..., None]


def _task_rows(row: Row) -> None:
    """Issue N: the 500k card task in <= 50 s and <= 1 GB, >= 4x Kannel, >= 10x Jasmin (its msg/s on its numbers)."""
    task, kannel = _figure("task", "end_to_end_seconds_"), _figure("peer", "kannel_end_to_end_msg_per_s_")
    rss = RESULTS.get("task", {}).get("server_peak_rss")
    if not task:
        return
    n = TASK.get("numbers") or task_numbers()
    row("task_500k_card_seconds", task["value"], 50, "s", at_most=True)
    row("task_500k_peak_rss_mb", rss["value"] if rss else None, 1024, "MB", at_most=True)
    if kannel:
        kannel_s = n / kannel["value"]
        row("task_500k_kannel_slower_x", kannel_s / task["value"], 4, "x", baseline=kannel_s,
            baseline_name="Kannel end to end, seconds")
    jasmin = RESULTS.get("jasmin", {}).get("best_end_to_end_msg_per_s")
    if jasmin:
        row("task_500k_jasmin_slower_x", n / task["value"] / jasmin, 10, "x", baseline=jasmin,
            baseline_name="Jasmin's best end to end, msg/s")


def _api_rows(row: Row) -> None:
    """Issue N: SendCardSms >= 3,000 req/s closed loop and p99 <= 20 ms at 1,000 offered; SendSms >= 5,000 req/s;
    the best of the one-process and `--http-processes N` layouts measured in the run."""
    api = RESULTS.get("api", {})
    cards = [v for k, v in api.items() if k.endswith("send_card_sms_max_req_per_s") and "one_process" not in k]
    p99s = [v for k, v in api.items() if k.endswith("send_card_sms_at_1000_per_s_p99")]
    texts = [v for k, v in api.items() if k.endswith("send_sms_max_req_per_s")]
    if cards:
        best = max(cards, key=lambda v: v["value"])
        row("send_card_sms_req_per_s", best["value"], 3000, "req/s", baseline=best.get("baseline"),
            baseline_name=best.get("baseline_name", "/healthz"))
    if p99s:
        row("send_card_sms_p99_ms_at_1000_per_s", min(v["value"] for v in p99s), 20, "ms", at_most=True)
    if texts:
        row("send_sms_req_per_s", max(v["value"] for v in texts), 5000, "req/s")


def targets() -> dict[str, dict[str, Any]]:
    """The issue's target table, row by row: value, target, baseline and whether the target is met."""
    rows: dict[str, dict[str, Any]] = {}

    def row(key: str, value: float | None, target: float, unit: str, at_most: bool = False,
            baseline: float | None = None, baseline_name: str = "") -> None:
        if value is None:
            return
        met = value <= target if at_most else value >= target
        entry: dict[str, Any] = {"value": round(value, 3), "unit": unit,
                                 "target": f"{'<=' if at_most else '>='} {target:g}", "met": met}
        if baseline:
            entry.update(baseline=round(baseline, 3), baseline_name=baseline_name)
        rows[key] = entry

    _task_rows(row)
    _api_rows(row)
    opens = [v for k, v in RESULTS.get("links", {}).items() if k.endswith("_opens_per_s")]
    if opens:
        worst = min(opens, key=lambda v: v["value"])
        row("link_opens_per_s", worst["value"], 8000, "req/s", baseline=worst.get("baseline"),
            baseline_name="/healthz")
    for kind, target in (("csv", 1.0), ("xlsx", 1.5)):
        imp = _figure("import", f"{kind}_500k_seconds")
        if imp:
            row("import_500k_seconds" if kind == "csv" else "import_500k_xlsx_seconds", imp["value"], target, "s",
                at_most=True, baseline=imp.get("baseline"), baseline_name="csv.reader pass")
    two = _figure("workers", "two_workers_bind_limited_msg_per_s_")
    if two:
        row("workers_2_over_1_bind_limited", two["ratio"], 1.9, "x", baseline=two.get("baseline"),
            baseline_name="one worker, msg/s")
    return rows


def main() -> None:
    only = [s for s in os.environ.get("BENCH_ONLY", ",".join(SECTIONS)).split(",") if s]
    RESULTS["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with tempfile.TemporaryDirectory(prefix="cardsms-bench-") as tmp:
        for name in only:
            print(f"[{name}]", flush=True)
            (Path(tmp) / name).mkdir()
            SECTIONS[name](Path(tmp) / name)
    RESULTS["targets"] = targets()
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(RESULTS, indent=2, ensure_ascii=False) + "\n")
    width = max(len(r[0]) for r in ROWS)
    print(f"\n{'figure':<{width}}  {'value':>18}  {'baseline':<40}  ratio")
    for figure, value, base, ratio in ROWS:
        print(f"{figure:<{width}}  {value:>18}  {base:<40}  {ratio}")
    if RESULTS["targets"]:
        print("\ntargets (docs/performance.md)")
        for key, t in RESULTS["targets"].items():
            print(f"  {key:<40} {t['value']:>12,.2f} {t['unit']:<6} target {t['target']:<9} "
                  f"{'met' if t['met'] else 'MISSED'}")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
