"""The operator's flows in a real browser (Debian's chromium through Playwright) on the embedded
server: log in, design a card, test-send a public template, import and revoke a 500,000-number
task, run a task to completion and export it, switch the language. Every main page is
screenshotted at phone and desktop width into test-artifacts/screenshots/."""

from __future__ import annotations

import csv
import io
import random
import struct
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from cardsms.domain.schedule import CHINA
from tests.conftest import env_for
from tests.harness import Server, cli, running_server

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "console-pass-1"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>'
XSS_TITLE = "Sale<script>__xss=2</script>"  # a title may hold 30 characters
MAIN_PAGES = ["", "qualifications", "signs",
              "templates", "cards", "cards/new", "public", "public/PUB_ORDER_SHIPPED", "tasks",
              "tasks/new", "audiences", "records", "settings", "users", "audit", "password"]


@pytest.fixture(scope="module")
def console_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    # reviews take 2 s, so the tests see the vendors turning from reviewing to approved
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="2", CARDSMS_REVIEW_POLL_SECONDS="0.2")
    cli(env, "account", "create", "shop")
    cli(env, "user", "create", "ops", "--account", "shop", "--role", "admin", "--password", PASSWORD)
    cli(env, "user", "create", "watcher", "--account", "shop", "--role", "viewer", "--password", PASSWORD)
    with running_server(env, "sqlite") as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def new_context(browser: Browser, server: Server, width: int = 1280, lang: str = "zh-CN") -> BrowserContext:
    ctx = browser.new_context(viewport={"width": width, "height": 900}, locale=lang, base_url=server.url,
                              extra_http_headers={"Accept-Language": lang}, accept_downloads=True)
    ctx.set_default_timeout(20_000)
    return ctx


def log_in(page: Page, user: str = "ops", password: str = PASSWORD) -> None:
    page.goto("/console/")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.fixture(scope="module")
def ops(browser: Browser, console_server: Server) -> Iterator[Page]:
    ctx = new_context(browser, console_server)
    page = ctx.new_page()
    log_in(page)
    expect(page).to_have_url(console_server.url + "/console/")
    add_signature(page, "Shop")
    yield page
    ctx.close()


def png_16x9(path: Path, width: int = 320, height: int = 180) -> Path:
    rows = b"".join(b"\x00" + bytes((20, 120, 200)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def add_signature(page: Page, name: str) -> None:
    page.goto("/console/signs")
    page.fill("#f-name", name)
    page.fill("#f-remark", "our shop's signature")
    page.click("form.stack button")
    expect(page.locator("tbody")).to_contain_text(f"【{name}】")
    for _ in range(50):  # the carrier's (simulated) review approves it after 2 s
        if page.locator("tbody .badge.s1").count():
            return
        page.wait_for_timeout(200)
        page.reload()
    raise AssertionError(f"signature {name} was not approved")


def test_login_rejects_a_wrong_password_and_limits_attempts(browser: Browser, console_server: Server) -> None:
    ctx = new_context(browser, console_server, lang="en")
    page = ctx.new_page()
    log_in(page, password="wrong-password")
    expect(page.locator(".notice.bad")).to_contain_text("Wrong user name or password")
    expect(page).to_have_url(console_server.url + "/console/login")
    # the session cookie is HttpOnly and SameSite, and a viewer cannot change anything
    log_in(page, user="watcher")
    cookie = next(c for c in ctx.cookies() if c["name"] == "cardsms_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.goto("/console/cards/new")
    expect(page.locator("h1")).to_contain_text("Not allowed")
    ctx.close()


def test_design_a_card_with_an_uploaded_image(ops: Page, tmp_path: Path) -> None:
    ops.goto("/console/cards/new")
    ops.fill("#f-name", "Autumn sale")
    ops.fill("#f-sign", "Shop")
    ops.fill("#f-scene", "sale")
    ops.set_input_files("input[name=p0_e0_file]", png_16x9(tmp_path / "cover.png"))
    expect(ops.locator("[data-src]")).to_be_visible()  # uploaded and registered as a media resource
    ops.fill("textarea[name=p0_e1_content]", XSS_TITLE)
    ops.fill("textarea[name=p0_e2_content]", "Everything 20% off " + XSS)
    ops.fill("input[name=p0_e3_content]", "Shop now")
    ops.fill("input[name=p0_e3_target]", "https://shop.example/sale")
    preview = ops.locator("#phone-preview")
    expect(preview).to_contain_text("Everything 20% off <img src=x")  # the markup is shown as text
    expect(preview.locator("img")).to_have_count(1)  # only the uploaded image, not the injected one
    expect(preview.locator("a.button")).to_have_text("Shop now")
    ops.click("button[data-action=save]")
    ops.wait_for_url("**/console/cards/CARD_SMS_*")
    vendors = ops.locator("#vendor-progress .vendor")
    expect(vendors).to_have_count(6)
    assert ops.locator("#vendor-progress [data-state='0']").count() > 0  # still reviewing right after submit
    expect(ops.locator("#vendor-progress [data-state='1']")).to_have_count(6)  # htmx polls: every vendor approves
    expect(ops.locator("#phone-preview")).to_contain_text(XSS)
    expect(ops.locator("#phone-preview")).to_contain_text(XSS_TITLE)
    assert ops.evaluate("window.__xss") is None


def test_text_and_digital_templates(ops: Page, tmp_path: Path) -> None:
    ops.goto("/console/templates")
    ops.fill("#f-name", "pickup")
    ops.fill("#f-content", "Your parcel ${code} is ready")
    ops.fill("#f-remark", "parcel lockers")
    ops.click("form.stack:not(#digital-form) button")
    expect(ops.locator("tbody").first).to_contain_text("Your parcel ${code} is ready")
    ops.fill("#f-d_name", "brochure")
    ops.fill("#f-d_remark", "autumn brochure")
    ops.click("#digital-form button")
    expect(ops.locator("[data-field=d_media] .err")).to_contain_text("TemplateContents")  # next to its field
    ops.fill("#f-d_name", "brochure")
    ops.fill("#f-d_content", "Our autumn brochure")
    ops.fill("#f-d_remark", "autumn brochure")
    ops.set_input_files("#f-d_media", png_16x9(tmp_path / "page1.png"))
    ops.click("#digital-form button")
    expect(ops.locator("tbody").nth(1)).to_contain_text("brochure")


def test_qualification_with_files_is_refused_field_by_field_then_reviewed(ops: Page, tmp_path: Path) -> None:
    ops.goto("/console/qualifications")
    values = {"#f-name": "headquarters", "#f-company_name": "杭州卡片科技有限公司",
              "#f-organization_code": "91330100799655058C", "#f-legal_person_name": "张三",
              "#f-legal_id": "11010519491231002X", "#f-admin_name": "李四", "#f-admin_phone": "13800138000",
              "#f-admin_id": "11010519491231002X"}
    for selector, value in values.items():
        ops.fill(selector, value)
    ops.set_input_files("#f-license", png_16x9(tmp_path / "licence.png"))
    ops.click("form.stack button")
    # a typo in the credit code: named next to its field, nothing stored, the form keeps what was typed
    expect(ops.locator("[data-field=organization_code] .err")).to_contain_text("GB 32100")
    expect(ops.locator("#f-company_name")).to_have_value("杭州卡片科技有限公司")
    expect(ops.locator("#qualifications tbody")).not_to_contain_text("headquarters")
    ops.fill("#f-organization_code", "91330100799655058B")
    ops.set_input_files("#f-license", png_16x9(tmp_path / "licence.png"))
    ops.click("form.stack button")
    row = ops.locator("#qualifications tbody tr", has_text="headquarters")
    expect(row).to_contain_text("91330100799655058B")
    for _ in range(50):  # the (simulated) review approves it after 2 s
        if row.locator(".badge.s1").count():
            break
        ops.wait_for_timeout(200)
        ops.reload()
    expect(row.locator(".badge.s1")).to_have_count(1)


def test_designer_names_the_broken_rule(ops: Page) -> None:
    ops.goto("/console/cards/new")
    ops.fill("#f-name", "x" * 25)
    ops.click("button[data-action=save]")
    expect(ops.locator("[data-error=template]")).to_contain_text("templateName")


def test_public_template_test_send_to_three_numbers(ops: Page) -> None:
    ops.goto("/console/public")
    ops.click("tr[data-code=PUB_MEMBER_DAY] a")
    dialog = ops.locator(".dialog")
    expect(dialog.locator("#t-code")).to_have_value("PUB_MEMBER_DAY")
    expect(dialog.locator("#t-code")).to_have_attribute("readonly", "")
    expect(dialog.locator("#vendor-progress [data-state='1']")).to_have_count(6)
    expect(dialog.locator("#phone-preview")).to_contain_text("会员日")
    ops.select_option("#f-sign", "Shop")
    ops.fill("#f-numbers", "13800138000\n13900139000, 12345")
    ops.click(".dialog button[type=submit]")
    results = ops.locator("#test-results tr[data-number]")
    expect(results).to_have_count(3)
    expect(ops.locator("tr[data-number='12345']")).to_have_attribute("data-result", "invalid")
    for number in ("13800138000", "13900139000"):
        assert ops.locator(f"tr[data-number='{number}']").get_attribute("data-result") in ("card", "no_card")
    ops.fill("#f-numbers", "\n".join(str(13800000000 + i) for i in range(11)))
    ops.click(".dialog button[type=submit]")
    expect(ops.locator("#test-results [data-error=numbers]")).to_contain_text("10")


def big_zipped_csv(path: Path) -> tuple[Path, int, int, int]:
    """500,000 number lines with a parameter column: some invalid, some duplicated."""
    rng = random.Random(7)
    out = io.StringIO()
    out.write("phone,name\n")
    invalid = duplicates = 0
    for i in range(500_000):
        if i % 1000 == 999:
            out.write(f"99{i},bad\n")
            invalid += 1
        elif i % 500 == 250:
            out.write("13500000000,dup\n")
            duplicates += 1
        else:
            out.write(f"{13600000000 + i},c{rng.randrange(100)}\n")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("numbers.csv", out.getvalue())
    assert path.stat().st_size <= 3 * 1024 * 1024
    return path, 500_000, invalid, duplicates - 1  # one of the repeated numbers is kept


def next_window_start() -> str:
    tomorrow = (datetime.now(CHINA) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    return tomorrow.strftime("%Y-%m-%dT%H:%M")


def fill_task(page: Page, name: str, template: str) -> None:
    page.goto("/console/tasks/new")
    page.fill("#f-name", name)
    page.select_option("#f-sign_name", "Shop")
    page.select_option("#f-card_template_code", template)


def test_mass_task_import_report_schedule_and_revoke(ops: Page, console_server: Server, tmp_path: Path) -> None:
    cli(console_server.env, "account", "set-window", "shop", "08:00-22:00")  # the mainland hours for the schedule
    try:
        schedule_and_revoke(ops, tmp_path)
    finally:
        cli(console_server.env, "account", "set-window", "shop", "default")  # the tests' whole day


def schedule_and_revoke(ops: Page, tmp_path: Path) -> None:
    fill_task(ops, "x" * 31, "PUB_SERVICE_NOTICE")
    ops.set_input_files("#f-file", png_16x9(tmp_path / "not-numbers.png"))
    ops.click("button[data-action=submit]")
    expect(ops.locator("[data-field=name] .err")).to_contain_text("30")  # the message sits next to its field
    file, total, invalid, duplicates = big_zipped_csv(tmp_path / "numbers.zip")
    fill_task(ops, "Half a million", "PUB_SERVICE_NOTICE")
    ops.set_input_files("#f-file", file)
    ops.check("input[name=schedule][value=later]")
    ops.fill("#f-scheduled_at", (datetime.now(CHINA) + timedelta(days=1)).replace(hour=23).strftime("%Y-%m-%dT%H:%M"))
    ops.click("button[data-action=submit]")
    expect(ops.locator("[data-field=scheduled_at] .err")).to_contain_text("08:00")
    ops.set_input_files("#f-file", file)
    ops.fill("#f-scheduled_at", next_window_start())
    ops.click("button[data-action=submit]")
    ops.wait_for_url("**/console/tasks/*")
    report = ops.locator("#import-report")
    expect(ops.locator("#task-live")).to_have_attribute("data-state", "scheduled", timeout=120_000)
    expect(report.locator("[data-report=total]")).to_have_text(str(total))
    expect(report.locator("[data-report=invalid]")).to_have_text(str(invalid))
    expect(report.locator("[data-report=duplicates]")).to_have_text(str(duplicates))
    with ops.expect_download() as dl:
        report.locator("a[download]").click()
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0] == "line,value,reason" and len(lines) == invalid + 1 and lines[1].startswith("1001,99999")
    ops.click("#task-live form[action$=revoke] button")
    expect(ops.locator("#task-live")).to_have_attribute("data-state", "revoked")


def test_task_runs_to_completion_with_live_progress_and_export(ops: Page, tmp_path: Path) -> None:
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("\n".join(str(13700000000 + i) for i in range(40)) + "\n13700000000\n")
    ops.goto("/console/cards")
    designed = str(ops.locator("td.mono a").first.text_content())  # the card with markup in its texts
    fill_task(ops, "Small batch", designed)
    ops.set_input_files("#f-file", numbers)
    ops.click("button[data-action=submit]")
    ops.wait_for_url("**/console/tasks/*")
    seen = set()
    live = ops.locator("#task-live")
    for _ in range(300):
        seen.add(live.get_attribute("data-state"))
        if "completed" in seen:
            break
        ops.wait_for_timeout(100)
    assert "completed" in seen, seen
    expect(ops.locator("#task-progress")).to_have_attribute("data-pct", "100")
    expect(ops.locator("[data-stat=card]")).not_to_have_text("0")
    with ops.expect_download() as dl:
        ops.click("a[data-action=export]")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert len(rows) == 40 and len({r["phone"] for r in rows}) == 40
    assert all(r["state"] in ("submitted", "delivered", "skipped") for r in rows)
    sent = [r for r in rows if r["channel"] == "card" and r["state"] != "skipped"]
    assert sent and all(XSS_TITLE in r["content"] for r in sent)  # the export holds the text as text
    link = next(w for w in sent[0]["content"].split() if "/s/" in w)
    ops.goto(link)  # the card's web page, as a browser opening the short link sees it
    expect(ops.locator("main.card")).to_contain_text(XSS_TITLE)
    expect(ops.locator("main.card")).to_contain_text(XSS)
    assert ops.evaluate("window.__xss") is None
    ops.goto("/console/tasks")
    expect(ops.locator("tr[data-task][data-state=completed]")).to_have_count(1)


def test_forms_need_the_csrf_token_and_example_downloads(ops: Page) -> None:
    forged = ops.request.post("/console/settings/suppress", form={"phone": "13800000009"})
    assert forged.status == 403  # the session cookie alone is not enough
    ops.goto("/console/settings")
    expect(ops.locator("tr[data-suppressed='13800000009']")).to_have_count(0)
    ops.goto("/console/tasks/new")
    with ops.expect_download() as dl:
        ops.click("a[href$='example.csv']")
    assert Path(dl.value.path()).read_text().splitlines()[0] == "phone,name,code"


def test_switch_language(ops: Page) -> None:
    ops.goto("/console/")
    ops.click("a[data-lang=en]")
    expect(ops.locator("nav.side")).to_contain_text("Overview")
    expect(ops.locator("h1")).to_have_text("Overview")
    ops.click("a[data-lang=zh-CN]")
    expect(ops.locator("nav.side")).to_contain_text("概览")
    expect(ops.locator("h1")).to_have_text("概览")
    # CJK glyphs render with a real font: the heading is wider than one replacement box per character
    assert ops.locator("h1").bounding_box()["width"] > 30  # type: ignore[index]


def test_audiences_suppression_and_records(ops: Page, tmp_path: Path) -> None:
    audience = tmp_path / "vip.csv"
    audience.write_text("phone,name\n13600000001,Li\n13600000002,=HYPERLINK(\"x\")\n13600000001,Li\nnope,x\n")
    ops.goto("/console/audiences")
    ops.click("form.stack button")
    expect(ops.locator("[data-field=name] input:invalid, [data-field=file] .err")).to_have_count(1)
    ops.fill("#f-name", "VIP customers")
    ops.set_input_files("#f-file", audience)
    ops.click("form.stack button")
    live = ops.locator("#audience-live")
    expect(live).to_have_attribute("data-state", "ready")
    expect(live.locator("[data-report=kept]")).to_have_text("2")
    expect(live.locator("[data-report=duplicates]")).to_have_text("1")
    expect(live.locator("[data-report=invalid]")).to_have_text("1")
    expect(live.locator("tbody")).to_contain_text('=HYPERLINK("x")')  # shown as text
    ops.goto("/console/audiences")
    expect(ops.locator("tr[data-audience]")).to_have_count(1)

    ops.goto("/console/settings")
    ops.fill("#s-phone", "not a number")
    ops.click("#suppression form.row button")
    expect(ops.locator("[data-error=suppress]")).to_contain_text("phone")
    ops.fill("#s-phone", "+86 139 0000 0007")
    ops.click("#suppression form.row button")
    expect(ops.locator("tr[data-suppressed='13900000007']")).to_have_count(1)
    ops.click("tr[data-suppressed='13900000007'] button")
    expect(ops.locator("tr[data-suppressed='13900000007']")).to_have_count(0)
    expect(ops.locator("#connectors")).to_contain_text("sim")

    ops.goto("/console/records?phone=13800138000")
    expect(ops.locator("tbody tr")).not_to_have_count(0)
    expect(ops.locator("tbody")).to_contain_text("13800138000")


def window_without_now() -> tuple[str, str]:
    """A one-hour send window that does not hold the present moment (the test runs at any hour), and its start."""
    now = datetime.now(CHINA)
    hour = (now.hour + (2 if now.minute >= 58 else 1)) % 24
    return f"{hour:02d}:00-{hour + 1:02d}:00", f"{hour:02d}:00"


def test_a_task_outside_the_send_window_waits_and_its_rate_changes_while_it_runs(
        ops: Page, console_server: Server, tmp_path: Path) -> None:
    window, opens = window_without_now()
    try:
        ops.goto("/console/settings")  # the account's own window, set by an admin
        ops.fill("#w-window", "22:00-08:00")
        ops.click("#send-window button")
        expect(ops.locator("[data-error=window]")).to_contain_text("window")
        ops.fill("#w-window", window)
        ops.click("#send-window button")
        expect(ops.locator("#w-window")).to_have_value(window)
        ops.goto("/console/tasks/new")
        expect(ops.locator("#window-note")).to_contain_text(window)  # said before submitting
        expect(ops.locator("#window-note")).to_contain_text(opens)
        numbers = tmp_path / "night.txt"
        numbers.write_text("\n".join(str(13300000000 + i) for i in range(200)) + "\n")
        fill_task(ops, "Night batch", "PUB_SERVICE_NOTICE")
        ops.set_input_files("#f-file", numbers)
        ops.fill("#f-rate", "2")
        ops.click("button[data-action=submit]")
        ops.wait_for_url("**/console/tasks/*")
        live = ops.locator("#task-live")
        expect(live).to_have_attribute("data-state", "waiting", timeout=30_000)
        expect(ops.locator("#task-waiting")).to_contain_text(opens)
        expect(ops.locator("[data-event=waiting]")).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        ops.screenshot(path=str(ARTIFACTS / "task-waiting-1280.png"), full_page=True)
        cli(console_server.env, "account", "set-window", "shop", "default")  # the window opens: it starts
        expect(live).to_have_attribute("data-state", "sending", timeout=30_000)
        expect(ops.locator("#task-rate [data-rate]")).to_have_attribute("data-rate", "2")
        ops.fill("#r-rate", "50")
        ops.click("#rate-form button")
        expect(ops.locator("#task-rate [data-rate]")).to_have_attribute("data-rate", "50")
        expect(ops.locator("[data-event=rate]")).to_contain_text("2 per second -> 50 per second")
        expect(ops.locator("#task-live")).to_have_attribute("data-state", "sending")
        ops.screenshot(path=str(ARTIFACTS / "task-rate-1280.png"), full_page=True)
        ops.click("#task-live form[action$=cancel] button")
        expect(ops.locator("#task-live")).to_have_attribute("data-state", "cancelled")
    finally:
        cli(console_server.env, "account", "set-window", "shop", "default")


@pytest.mark.parametrize("width", [375, 1280])
def test_screenshots_without_overflow(browser: Browser, console_server: Server, width: int) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    ctx = new_context(browser, console_server, width=width)
    page = ctx.new_page()
    blocked: list[str] = []  # what the Content-Security-Policy stopped: must be nothing the console needs
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    log_in(page)
    page.wait_for_url("**/console/")
    page.goto("/console/cards")
    card = page.locator("td.mono a").first.get_attribute("href")
    page.goto("/console/audiences")
    audience = page.locator("tr[data-audience] a").first.get_attribute("href")
    for path in [*MAIN_PAGES, "tasks/1", "tasks/2", str(card)[9:], str(audience)[9:]]:
        page.goto("/console/" + path)
        page.wait_for_load_state("networkidle")
        name = (path.replace("/", "_") or "overview").replace("CARD_SMS_", "")
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"/console/{path} overflows by {overflow}px at {width}px"
        spilled = page.evaluate("""[...document.querySelectorAll('.vendor')].filter(v => {
            const b = v.querySelector('.badge'); if (!b) return false;
            const o = v.getBoundingClientRect(), i = b.getBoundingClientRect();
            return i.right > o.right - 1 || i.left < o.left + 1; }).map(v => v.dataset.vendor)""")
        assert not spilled, f"/console/{path} at {width}px: the review badges of {spilled} spill over their chip"
        headers = page.request.get("/console/" + path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"].split("script-src", 1)[1].split(";")[0]
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
    assert not blocked, blocked
    ctx.close()


def test_design_a_single_coupon_card_end_to_end(ops: Page, tmp_path: Path) -> None:
    """One of the twelve types added with issue F, designed, validated, reviewed per vendor and previewed."""
    ops.goto("/console/cards/new")
    ops.select_option("#f-card_type", "19")
    ops.fill("#f-name", "Coupon")
    ops.fill("#f-sign", "Shop")
    ops.fill("#f-scene", "coupon")
    ops.set_input_files("input[name=p0_e0_file]", png_16x9(tmp_path / "logo.png", 200, 200))
    expect(ops.locator("[data-src]")).to_be_visible()
    ops.fill("textarea[name=p0_e1_content]", "满100减20元券")
    ops.fill("textarea[name=p0_e2_content]", "【Shop】全场通用，12月31日前有效")
    ops.fill("input[name=p0_e3_content]", "立即领取优惠券吧")  # 8 characters: the most a coupon button takes
    ops.fill("input[name=p0_e3_target]", "https://shop.example/coupon")
    ops.click("button[data-action=save]")
    ops.wait_for_url("**/console/cards/CARD_SMS_*")
    expect(ops.locator("#vendor-progress [data-state='1']")).to_have_count(2)  # HuaWei and HONOR render coupons
    expect(ops.locator("#vendor-progress [data-vendor=XiaoMi]")).to_have_attribute("data-state", "3")
    expect(ops.locator("#phone-preview")).to_contain_text("满100减20元券")
    expect(ops.locator("#phone-preview a.button")).to_have_text("立即领取优惠券吧")


def test_users_page_password_change_and_audit_log(ops: Page, browser: Browser, console_server: Server) -> None:
    ops.goto("/console/users")
    ops.fill("#f-username", "clerk")
    ops.select_option("#f-role", "operator")
    ops.fill("#f-password", "clerk-pass-1")
    ops.click("form.stack button")
    expect(ops.locator("tr[data-user=clerk]")).to_be_visible()

    clerk_ctx = new_context(browser, console_server)
    clerk = clerk_ctx.new_page()
    log_in(clerk, "clerk", "clerk-pass-1")
    clerk.wait_for_url("**/console/")
    expect(clerk.locator("nav.side a[href='/console/users']")).to_have_count(0)  # not an admin
    assert clerk.request.get("/console/users").status == 403

    # an admin resets the password: shown once; the clerk's session ends at once
    ops.locator("tr[data-user=clerk] button[data-action=reset]").click()
    new_password = ops.locator("#reset-password code").inner_text().strip()
    assert len(new_password) >= 12
    clerk.goto("/console/templates")
    clerk.wait_for_url("**/console/login**")
    log_in(clerk, "clerk", new_password)
    clerk.wait_for_url("**/console/")

    # the clerk changes the password: signed out everywhere, the new one works
    clerk.goto("/console/password")
    clerk.fill("#f-current", "wrong-password")
    clerk.fill("#f-new", "clerk-pass-2")
    clerk.fill("#f-again", "clerk-pass-2")
    clerk.click("form.stack button")
    expect(clerk.locator("[data-field=current] .err")).to_be_visible()
    clerk.fill("#f-current", new_password)
    clerk.fill("#f-new", "clerk-pass-2")
    clerk.fill("#f-again", "clerk-pass-2")
    clerk.click("form.stack button")
    clerk.wait_for_url("**/console/login**")
    log_in(clerk, "clerk", "clerk-pass-2")
    clerk.wait_for_url("**/console/")

    # disabled: the session ends and no new one starts
    ops.goto("/console/users")
    ops.locator("tr[data-user=clerk] button[data-action=disable]").click()
    expect(ops.locator("tr[data-user=clerk] .badge.s2")).to_be_visible()
    clerk.goto("/console/")
    clerk.wait_for_url("**/console/login**")
    log_in(clerk, "clerk", "clerk-pass-2")
    expect(clerk.locator("[role=alert]")).to_be_visible()
    clerk_ctx.close()
    # the last enabled admin cannot disable themself
    ops.locator("tr[data-user=ops] button[data-action=disable]").click()
    expect(ops.locator("p.err")).to_contain_text("admin")

    # who did what, viewable and exportable
    ops.goto("/console/audit")
    for action in ("user.create", "user.reset", "user.password", "user.disable"):
        expect(ops.locator(f"#audit tr[data-action='{action}']").first).to_contain_text("clerk")
    expect(ops.locator("#audit tr[data-action='user.password']").first).to_contain_text("user:clerk")
    with ops.expect_download() as dl:
        ops.click("a[data-action=export]")
    exported = Path(dl.value.path()).read_text()
    assert exported.splitlines()[0] == "time,actor,action,subject,detail" and "user:ops,user.disable,clerk" in exported
