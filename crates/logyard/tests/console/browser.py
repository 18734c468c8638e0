"""The console in a real browser: Debian's Chromium driven by Playwright, against a running
`logyard serve` that crates/logyard/tests/console.rs started and seeded.

    browser.py first  BASE OPS_TOKEN ANALYST_TOKEN OUT_DIR
    browser.py second BASE OPS_TOKEN OUT_DIR        (after the server restarted)
    browser.py alerts BASE ADMIN_TOKEN QUERY_TOKEN OUT_DIR   (the rule checkout-errors firing;
                                                               the admin adds, previews, edits
                                                               and deletes cart-errors)

Every check raises AssertionError with what was seen; the exit code tells the Rust test.
Screenshots of each page at 1280x800 and 390x844 go to OUT_DIR.
"""

import datetime
import json
import sys
import time
import urllib.parse
import urllib.request

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SAVED_NAME = "checkout errors"
ALERT_RULE = "checkout-errors"
ALERT_QUERY = "status:>=500"
NEW_RULE = "cart-errors"
NEW_QUERY = 'route:"/cart" status:>=500'
SAVED_QUERY = "status:>=500 checkout"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def call(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
        return json.loads(text) if text.strip().startswith(("{", "[")) else text


def post_events(base, token, events):
    body = "\n".join(json.dumps(e) for e in events).encode()
    request = urllib.request.Request(base + "/api/v1/streams/storefront/events", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/x-ndjson")
    urllib.request.urlopen(request, timeout=10).read()


def sql_count(base, token, sql):
    result = call(base, token, "POST", "/api/v1/query", {"sql": sql, "format": "json"})
    return int(list(result["rows"][0].values())[0])


class Recorder:
    """Every request the browser makes, and every error the page logs."""

    def __init__(self, page, base):
        self.base = base
        self.requests = []
        self.errors = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def check(self, tokens, expected=("401",)):
        assert self.requests, "no request was recorded"
        for url in self.requests:
            assert url.startswith(self.base) or url.startswith("data:") or url == "about:blank", (
                f"the console fetched from elsewhere: {url}"
            )
            for token in tokens:
                assert token not in url, f"a token in a URL: {url}"
        # A sign-in logs a 401 (and a search of a hidden stream a 404); nothing else may fail.
        errors = [e for e in self.errors if not any(f"status of {code}" in e for code in expected)]
        assert not errors, f"the page logged errors: {errors}"


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])


def sign_in(page, token):
    dialog = page.locator("#signin")
    expect(dialog).to_be_visible(timeout=10_000)
    page.fill("#signin-token", token)
    page.click("#signin-form button[type=submit]")
    expect(dialog).to_be_hidden()


def signed_in(browser, base, token):
    """A new tab on the search page, signed in, its requests recorded."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    recorder = Recorder(page, base)
    page.goto(base + "/ui/search")
    sign_in(page, token)
    wait_results(page)
    return context, page, recorder


def search(page, query):
    page.fill("input.query", query)
    page.press("input.query", "Enter")
    wait_results(page)


def wait_results(page):
    expect(page.locator("main[aria-busy]")).to_have_count(0, timeout=20_000)
    expect(page.locator(".summary")).to_contain_text("events in")


def shown_total(page):
    text = page.locator(".summary").inner_text()
    return int(text.split(" events in")[0].replace(",", ""))


def screenshots(browser, base, token, out, pages):
    """Each page at both sizes, signed in through the dialog as a person would."""
    for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=size, device_scale_factor=1)
        page = context.new_page()
        page.goto(base + "/ui/search?streams=storefront&since=1h")
        sign_in(page, token)
        for label, path, ready in pages:
            page.goto(base + path)
            expect(page.locator(ready).first).to_be_visible(timeout=20_000)
            page.wait_for_timeout(300)
            page.screenshot(path=f"{out}/{label}-{name}.png", full_page=False)
        context.close()


def first(base, ops, analyst, out):
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        page = context.new_page()
        seen = Recorder(page, base)

        # A browser at / is sent to the console, which asks for a token; the page's headers.
        response = page.goto(base + "/")
        assert page.url == base + "/ui/search", page.url
        headers = response.all_headers()
        assert headers.get("content-security-policy") == CSP, headers
        assert headers.get("x-frame-options") == "DENY", headers
        assert headers.get("x-content-type-options") == "nosniff", headers
        assert "set-cookie" not in headers, headers
        sign_in(page, ops)

        # The search, its histogram against SQL's count, and the SQL it shows.
        page.goto(base + "/ui/search?streams=storefront&since=1h&columns=id,route,status,message")
        wait_results(page)
        search(page, SAVED_QUERY)
        total = shown_total(page)
        result = call(base, ops, "POST", "/api/v1/search",
                      {"streams": ["storefront"], "query": SAVED_QUERY, "since": "1h", "histogram": True, "limit": 1})
        start, end = result["from"], result["to"]
        expected = sql_count(base, ops, f"""SELECT count(*) FROM storefront WHERE status >= 500
            AND message ILIKE '%checkout%' AND timestamp >= '{start}' AND timestamp < '{end}'""")
        assert total == expected and expected > 0, f"the page counts {total}, SQL {expected}"
        legend = page.locator(".legend .swatch").all_inner_texts()
        assert sum(int(t.split()[-1].replace(",", "")) for t in legend) == expected, legend
        expect(page.locator(".histogram canvas").first).to_be_visible()
        page.click("details.sql summary")
        expect(page.locator("details.sql pre")).to_contain_text('"status" >= 500')

        # A row opens to its whole event; a value's + button narrows the search to it.
        page.locator("tr.event").first.click()
        detail = page.locator("tr.detail:not([hidden])").first
        expect(detail).to_contain_text("Copy JSON")
        detail.locator("details.json summary").click()
        shown = json.loads(detail.locator("details.json pre").inner_text())
        assert shown["_stream"] == "storefront" and shown["status"] >= 500, shown
        # The events of the same session around it.
        detail.locator("a", has_text="Surrounding events (same session_id)").click()
        wait_results(page)
        assert f'session_id:"{shown["session_id"]}"' in page.locator("input.query").input_value()
        sessions = call(base, ops, "POST", "/api/v1/search", {
            "streams": ["storefront"], "query": f'session_id:"{shown["session_id"]}"', "since": "2h", "limit": 1000})
        assert shown_total(page) > 1 and shown_total(page) <= len(sessions["events"]), shown_total(page)
        page.go_back()
        wait_results(page)
        page.locator("tr.event").first.click()
        detail = page.locator("tr.detail:not([hidden])").first
        route = detail.locator("tr", has=page.locator("th", has_text="route")).first
        route.locator("button[title^='Only events']").click()
        wait_results(page)
        assert 'route:"/checkout"' in page.locator("input.query").input_value()
        routes = set(page.locator("table.events tbody tr.event td:nth-child(3)").all_inner_texts())
        assert routes == {"/checkout"}, routes

        # Every page of an unfiltered search, scrolled through: each event once, none missing.
        page.goto(base + "/ui/search?streams=storefront&since=1h&columns=id,route,status,message")
        wait_results(page)
        all_ids = set(r["id"] for r in call(base, ops, "POST", "/api/v1/query",
                      {"sql": f"SELECT id FROM storefront WHERE timestamp >= now() - INTERVAL '1 hour'", "format": "json"})["rows"])
        more = page.locator("p.more")
        for _ in range(60):
            if "No older events" in more.inner_text():
                break
            more.scroll_into_view_if_needed()
            page.wait_for_timeout(250)
        expect(more).to_contain_text("No older events", timeout=10_000)
        ids = page.locator("table.events tbody tr.event td:nth-child(2)").all_inner_texts()
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events shown twice"
        assert set(ids) == all_ids, f"{len(all_ids - set(ids))} missing, {len(set(ids) - all_ids)} unknown"

        # Downloads: NDJSON through a one-time link, every matching event.
        search(page, SAVED_QUERY)
        with page.expect_download() as info:
            page.click("text=Download NDJSON")
        path = info.value.path()
        lines = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
        assert len(lines) == shown_total(page), f"{len(lines)} lines, {shown_total(page)} shown"
        assert all(l["status"] >= 500 and l["_stream"] == "storefront" for l in lines)
        with page.expect_download() as info:
            page.click("text=Download CSV")
        rows = open(info.value.path(), encoding="utf-8").read().strip().splitlines()
        assert len(rows) == shown_total(page) + 1, f"{len(rows)} CSV lines"

        # Live tail: an event posted now is on the page within 2 seconds of its 200.
        page.click("button.live")
        expect(page.locator(".live-status")).to_contain_text("live", timeout=10_000)
        marker = f"live-{time.time_ns()}"
        event = {"id": marker, "route": "/checkout", "status": 503, "level": "error",
                 "message": "POST /checkout 503 upstream reset"}
        ignored = {"id": marker + "-not", "route": "/cart", "status": 200, "level": "info", "message": "GET /cart 200"}
        post_events(base, ops, [ignored, event])
        acknowledged = time.monotonic()
        page.locator("table.events tbody td", has_text=marker).first.wait_for(timeout=5_000)
        took = time.monotonic() - acknowledged
        assert took < 2.0, f"the live event showed {took:.2f} s after its 200"
        assert page.locator("table.events tbody td", has_text=marker + "-not").count() == 0
        # Paused: new events wait aside; resumed: they are shown.
        page.click("text=Pause")
        post_events(base, ops, [{**event, "id": marker + "-2"}])
        expect(page.locator(".live-status")).to_contain_text("1 waiting", timeout=5_000)
        assert page.locator("table.events tbody td", has_text=marker + "-2").count() == 0
        page.click("text=Resume")
        page.locator("table.events tbody td", has_text=marker + "-2").first.wait_for(timeout=5_000)
        page.click("button.live")

        # Save the search (opened again after the restart, by `second`).
        page.click("text=Save search…")
        page.fill("form.save input", SAVED_NAME)
        page.click("form.save button[type=submit]")
        expect(page.locator("form.save")).to_contain_text("Saved.")

        # The SQL tab runs what the search showed; the reports page opens a report in a tab.
        page.goto(base + "/ui/sql?q=" + urllib.parse.quote("SELECT status, count(*) AS n FROM storefront GROUP BY status ORDER BY status"))
        page.click("text=Run")
        expect(page.locator(".results table.grid")).to_contain_text("503", timeout=20_000)
        page.goto(base + "/ui/reports")
        report = page.locator("table.grid tbody tr").first
        expect(report).to_be_visible(timeout=20_000)
        with context.expect_page() as opened:
            report.locator("button").first.click()
        tab = opened.value
        tab.wait_for_url("**/api/v1/downloads/**", timeout=10_000)
        tab.wait_for_load_state()
        expect(tab.locator("h1").first).to_be_visible()
        tab.close()
        seen.check([ops, analyst])
        context.close()

        # A token limited to one stream sees only that stream, everywhere.
        context, page, limited = signed_in(browser, base, analyst)
        page.click("details.streams summary")
        offered = page.locator("details.streams .menu label").all_inner_texts()
        assert [o.strip() for o in offered] == ["storefront"], offered
        page.goto(base + "/ui/search?streams=payments&since=1h")
        expect(page.locator(".search-error")).to_contain_text("no stream named payments", timeout=10_000)
        page.goto(base + "/ui/streams")
        expect(page.locator("main table").first).to_contain_text("storefront", timeout=10_000)
        assert "payments" not in page.locator("main").inner_text()
        page.goto(base + "/ui/sql")
        expect(page.locator("aside.schema")).to_contain_text("storefront", timeout=10_000)
        assert "payments" not in page.locator("aside.schema").inner_text()
        limited.check([ops, analyst], expected=("401", "404"))
        context.close()

        screenshots(browser, base, ops, out, [
            ("search", "/ui/search?streams=storefront&since=1h&q=status%3A%3E%3D500", ".legend"),
            ("sql", "/ui/sql?q=" + urllib.parse.quote("SELECT date_bin(INTERVAL '5 minutes', timestamp) AS t, count(*) AS events FROM storefront GROUP BY 1 ORDER BY 1"), "textarea"),
            ("streams", "/ui/streams", "main table"),
            ("reports", "/ui/reports", "table.grid"),
        ])
        browser.close()


def second(base, ops, out):
    with sync_playwright() as p:
        browser = launch(p)
        _, page, seen = signed_in(browser, base, ops)
        page.click("details.saved summary")
        page.click(f"details.saved a:has-text('{SAVED_NAME}')")
        wait_results(page)
        assert page.locator("input.query").input_value() == SAVED_QUERY
        assert page.locator("table.events tbody tr.event").count() > 0
        page.screenshot(path=f"{out}/saved-search-after-restart-desktop.png")
        seen.check([ops])
        browser.close()


def alert_rule(base, token):
    """The rule as `GET /api/v1/alerts` shows it to `token`."""
    rules = call(base, token, "GET", "/api/v1/alerts")["rules"]
    found = [r for r in rules if r["name"] == ALERT_RULE]
    assert found, f"{ALERT_RULE} is not listed: {rules}"
    return found[0]


def wait_alerts(page):
    expect(page.locator("main[aria-busy]")).to_have_count(0, timeout=30_000)
    section = page.locator(f"section.rule[data-rule='{ALERT_RULE}']")
    expect(section).to_be_visible(timeout=10_000)
    return section


def listed_rule(base, token, name):
    """The rule `name` as `GET /api/v1/alerts` lists it to `token`, or None."""
    found = [r for r in call(base, token, "GET", "/api/v1/alerts")["rules"] if r["name"] == name]
    return found[0] if found else None


def fill_rule(dialog):
    """The form filled with the search rule cart-errors (every 10s, value > 1, warning, hook)."""
    form = dialog.locator("form.rule-form")
    expect(form.locator("select[name=kind]")).to_have_value("search")
    expect(form.locator("textarea[name=sql]")).to_be_hidden()
    form.locator("input[name=name]").fill(NEW_RULE)
    form.locator("input[name=streams]").fill("web")
    form.locator("input[name=query]").fill(NEW_QUERY)
    form.locator("input[name=every]").fill("10s")
    form.locator("input[name=condition]").fill("value > 1")
    form.locator("select[name=severity]").select_option("warning")
    form.locator("input[name=notify][value=hook]").check()
    return form


def check_preview(dialog):
    """Preview: the window the rule looked at (10 s, ended) and its one group, which holds
    unless the latest window was still empty."""
    dialog.get_by_role("button", name="Preview").click()
    preview = dialog.locator(".rule-preview")
    expect(preview.locator(".preview-window")).to_contain_text("UTC", timeout=20_000)
    expect(dialog.locator(".form-error")).to_be_hidden()
    bounds = preview.locator(".preview-window time").evaluate_all("ts => ts.map((t) => t.getAttribute('datetime'))")
    start, end = (datetime.datetime.fromisoformat(b.replace("Z", "+00:00")) for b in bounds)
    assert (end - start).total_seconds() == 10, f"a 10 s window: {bounds}"
    assert end <= datetime.datetime.now(datetime.timezone.utc), f"an ended window: {bounds}"
    rows = preview.locator("table.grid tbody tr")
    if rows.count() == 0:
        expect(preview).to_contain_text("No group in this window.")
        print(f"the latest window {bounds} gave no group: the preview shows the window")
        return preview
    expect(rows).to_have_count(1)
    group, value, holds = (t.strip() for t in rows.first.locator("td").all_inner_texts())
    assert group == "(all)", group
    value = 0 if value == "–" else float(value.replace(",", ""))
    if value > 1:
        assert holds == "yes", f"value {value} > 1 but holds = {holds}"
    else:
        print(f"the latest window {bounds} was empty ({value}): the preview shows it, holds = {holds}")
        assert holds == "no", holds
    return preview


def rule_form(browser, base, admin, oncall, out):
    """An admin adds a rule from the console (preview, a refused condition, save), edits it and
    deletes it; a query-only token sees none of the buttons. Screenshots of the open form."""
    context = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    page = context.new_page()
    seen = Recorder(page, base)
    page.goto(base + "/ui/alerts")
    sign_in(page, admin)
    configured = wait_alerts(page)
    # A rule of logyard.toml is neither edited nor deleted here.
    expect(configured.get_by_role("button", name="Edit")).to_have_count(0)
    expect(configured.get_by_role("button", name="Delete")).to_have_count(0)

    # New rule: filled, previewed.
    page.get_by_role("button", name="New rule").click()
    dialog = page.locator("dialog.rule-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("New alert rule")
    form = fill_rule(dialog)
    check_preview(dialog)
    page.wait_for_timeout(300)
    page.screenshot(path=f"{out}/alerts-form-1280x800.png", full_page=False)

    # A condition the server refuses: its message in the form, which stays open.
    form.locator("input[name=condition]").fill("value >> 1")
    dialog.get_by_role("button", name="Save").click()
    problem = dialog.locator(".form-error")
    expect(problem).to_be_visible(timeout=10_000)
    expect(problem).to_contain_text("value >> 1")
    expect(dialog).to_be_visible()
    expect(form.locator("input[name=name]")).to_have_value(NEW_RULE)
    assert listed_rule(base, admin, NEW_RULE) is None, "a refused rule was kept"

    # Fixed and saved: the dialog closes, the page shows the rule, the API has it.
    form.locator("input[name=condition]").fill("value > 1")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0, timeout=10_000)
    added = page.locator(f"section.rule[data-rule='{NEW_RULE}']")
    expect(added).to_be_visible(timeout=20_000)
    expect(added.locator(".rule-head .source")).to_have_text("added through the API")
    expect(added.locator(".badge")).to_have_text("warning")
    expect(added.locator(".rule-query code.query")).to_have_text(NEW_QUERY)
    expect(added.locator(".rule-meta")).to_contain_text("every 10s")
    expect(added.locator(".rule-meta")).to_contain_text("notifies hook")
    expected = {"name": NEW_RULE, "search": {"streams": ["web"], "query": NEW_QUERY}, "every": "10s",
                "condition": "value > 1", "severity": "warning", "notify": ["hook"]}
    listed = listed_rule(base, admin, NEW_RULE)
    assert listed and listed["source"] == "api", listed
    # Nothing but what was filled in: empty optional fields were left out.
    assert listed["rule"] == expected, listed["rule"]

    # Edit: the same form, filled from the rule, its name read-only; every 10s -> 20s.
    added.get_by_role("button", name="Edit").click()
    dialog = page.locator("dialog.rule-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(f"Edit {NEW_RULE}")
    form = dialog.locator("form.rule-form")
    expect(form.locator("input[name=name]")).to_have_value(NEW_RULE)
    expect(form.locator("input[name=name]")).not_to_be_editable()
    expect(form.locator("select[name=kind]")).to_have_value("search")
    expect(form.locator("input[name=streams]")).to_have_value("web")
    expect(form.locator("input[name=query]")).to_have_value(NEW_QUERY)
    expect(form.locator("input[name=every]")).to_have_value("10s")
    expect(form.locator("input[name=condition]")).to_have_value("value > 1")
    expect(form.locator("select[name=severity]")).to_have_value("warning")
    expect(form.locator("input[name=notify][value=hook]")).to_be_checked()
    form.locator("input[name=every]").fill("20s")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0, timeout=10_000)
    expect(added.locator(".rule-meta")).to_contain_text("every 20s", timeout=20_000)
    listed = listed_rule(base, admin, NEW_RULE)
    assert listed and listed["rule"] == {**expected, "every": "20s"}, listed

    # The query-only token sees the rule, and no button to add, change or delete one.
    other = browser.new_context(viewport=DESKTOP)
    theirs = other.new_page()
    recorded = Recorder(theirs, base)
    theirs.goto(base + "/ui/alerts")
    sign_in(theirs, oncall)
    wait_alerts(theirs)
    shown = theirs.locator(f"section.rule[data-rule='{NEW_RULE}']")
    expect(shown).to_be_visible()
    expect(shown.locator(".rule-head .source")).to_have_text("added through the API")
    expect(theirs.get_by_role("button", name="New rule")).to_have_count(0)
    expect(theirs.get_by_role("button", name="Edit")).to_have_count(0)
    expect(theirs.get_by_role("button", name="Delete")).to_have_count(0)
    expect(theirs.locator("dialog.rule-dialog")).to_have_count(0)
    recorded.check([admin, oncall])
    other.close()

    # Delete, after a second step (Cancel first keeps it).
    added.get_by_role("button", name="Delete", exact=True).click()
    confirm = added.locator(".confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Delete this rule?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert listed_rule(base, admin, NEW_RULE) is not None
    added.get_by_role("button", name="Delete", exact=True).click()
    confirm.get_by_role("button", name="Delete rule").click()
    expect(added).to_have_count(0, timeout=20_000)
    expect(page.locator(f"section.rule[data-rule='{ALERT_RULE}']")).to_be_visible()
    assert listed_rule(base, admin, NEW_RULE) is None, "deleted on the page, still listed by the API"
    # The refused save logged its 400.
    seen.check([admin, oncall], expected=("401", "400"))
    context.close()

    # The form on a phone: within the screen, its buttons at hand; cancelled, nothing kept.
    context = browser.new_context(viewport=PHONE, device_scale_factor=1)
    page = context.new_page()
    recorded = Recorder(page, base)
    page.goto(base + "/ui/alerts")
    sign_in(page, admin)
    wait_alerts(page)
    page.get_by_role("button", name="New rule").click()
    dialog = page.locator("dialog.rule-dialog")
    expect(dialog).to_be_visible()
    fill_rule(dialog)
    check_preview(dialog)
    box = dialog.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"the form is off the screen: {box}"
    overflow = dialog.evaluate("d => d.scrollWidth - d.clientWidth")
    assert overflow <= 0, f"the form is {overflow} px wider than its dialog"
    expect(dialog.get_by_role("button", name="Save")).to_be_in_viewport()
    expect(dialog.get_by_role("button", name="Preview")).to_be_in_viewport()
    page.wait_for_timeout(300)
    page.screenshot(path=f"{out}/alerts-form-{PHONE['width']}x{PHONE['height']}.png", full_page=False)
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert listed_rule(base, admin, NEW_RULE) is None, "a cancelled form kept its rule"
    recorded.check([admin, oncall])
    context.close()


def alerts(base, admin, oncall, out):
    who = call(base, oncall, "GET", "/api/v1/session")["name"]
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        seen = Recorder(page, base)
        page.goto(base + "/ui/alerts")
        sign_in(page, oncall)
        rule = wait_alerts(page)
        expect(page.locator("nav a[data-page=alerts]")).to_have_class("active")
        # A query-only token may not add, change or delete rules.
        expect(page.get_by_role("button", name="New rule")).to_have_count(0)
        expect(rule.get_by_role("button", name="Edit")).to_have_count(0)

        # The rule, both routes firing, as the API says.
        expect(rule.locator(".badge")).to_have_text("critical")
        expect(rule.locator(".rule-meta")).to_contain_text("value > 3")
        expect(rule.locator(".rule-query code.query")).to_have_text(ALERT_QUERY)
        shown = alert_rule(base, oncall)
        for group in ("/checkout", "/cart"):
            assert any(a["group"] == group and a["state"] == "firing" for a in shown["alerts"]), shown
            item = rule.locator(f"li.alert[data-group='{group}']")
            expect(item).to_be_visible()
            expect(item.locator(".state")).to_have_text("firing")
            expect(item.get_by_role("button", name="Acknowledge")).to_be_visible()
            expect(item.get_by_role("button", name="Silence 1h")).to_be_visible()

        # The value over time and the latest evaluations, from logyard-alerts.
        expect(rule.locator(".trend-chart canvas").first).to_be_visible(timeout=10_000)
        expect(rule.locator("figcaption")).to_contain_text("largest value")
        firing_rows = rule.locator(".history tbody tr", has=page.locator(".state.firing"))
        expect(firing_rows.first).to_be_visible(timeout=10_000)
        times = rule.locator(".history tbody td.time").evaluate_all("cells => cells.map((c) => c.title)")
        assert 0 < len(times) <= 20 and times == sorted(times, reverse=True), f"newest first, 20 at most: {times}"

        # The webhook (nothing listens on its port) has not taken the notifications.
        owed = [n for n in alert_rule(base, oncall)["undelivered"] if n.get("last_error")]
        assert owed, f"nothing undelivered: {shown}"
        undelivered = rule.locator(".undelivered")
        expect(undelivered).to_be_visible()
        expect(undelivered).to_contain_text("not delivered")
        expect(undelivered).to_contain_text("hook")
        expect(undelivered).to_contain_text(owed[0]["last_error"])

        # Acknowledge /checkout: the page and the API say who.
        checkout = rule.locator("li.alert[data-group='/checkout']")
        checkout.get_by_role("button", name="Acknowledge").click()
        expect(checkout.locator(".mark.acknowledged")).to_contain_text(f"acknowledged by {who}", timeout=10_000)
        expect(checkout.get_by_role("button", name="Acknowledge")).to_have_count(0)
        acked = [a for a in alert_rule(base, oncall)["alerts"] if a["group"] == "/checkout"]
        assert acked and (acked[0]["acknowledged"] or {}).get("by") == who, acked

        # Silence /cart for an hour, then end the silence.
        cart = rule.locator("li.alert[data-group='/cart']")
        cart.get_by_role("button", name="Silence 1h").click()
        expect(cart.locator(".mark.silenced")).to_be_visible(timeout=10_000)
        expect(cart.get_by_role("button", name="Silence 1h")).to_have_count(0)
        silences = call(base, oncall, "GET", "/api/v1/silences")["silences"]
        mine = [s for s in silences if s["matchers"] == {"rule": ALERT_RULE, "group": "/cart"}]
        assert len(mine) == 1 and mine[0]["created_by"] == who, silences
        listed = rule.locator(f"li.silence[data-id='{mine[0]['id']}']")
        expect(listed).to_contain_text("group=/cart")
        listed.get_by_role("button", name="End").click()
        expect(listed).to_have_count(0, timeout=10_000)
        expect(cart.get_by_role("button", name="Silence 1h")).to_be_visible()
        left = call(base, oncall, "GET", "/api/v1/silences")["silences"]
        assert all(s["id"] != mine[0]["id"] for s in left), left

        # The rule's search, on the search page.
        rule.get_by_role("link", name="Open search").click()
        page.wait_for_url("**/ui/search?**", timeout=10_000)
        wait_results(page)
        assert page.locator("input.query").input_value() == ALERT_QUERY, page.locator("input.query").input_value()
        params = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        assert params.get("streams") == ["web"] and params.get("q") == [ALERT_QUERY], page.url
        assert shown_total(page) > 0, page.locator(".summary").inner_text()
        seen.check([admin, oncall])
        context.close()

        rule_form(browser, base, admin, oncall, out)

        # Both sizes, nothing wider than a phone's screen.
        for size in (DESKTOP, PHONE):
            context = browser.new_context(viewport=size, device_scale_factor=1)
            page = context.new_page()
            recorded = Recorder(page, base)
            page.goto(base + "/ui/alerts")
            sign_in(page, oncall)
            rule = wait_alerts(page)
            expect(rule.locator(".trend-chart canvas").first).to_be_visible(timeout=10_000)
            expect(rule.locator(".history tbody tr").first).to_be_visible(timeout=10_000)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the alerts page is {overflow} px wider than {size['width']} px"
            page.wait_for_timeout(300)
            page.screenshot(path=f"{out}/alerts-{size['width']}x{size['height']}.png", full_page=False)
            recorded.check([admin, oncall])
            context.close()
        browser.close()


if __name__ == "__main__":
    phase = sys.argv[1]
    if phase == "first":
        first(*sys.argv[2:6])
    elif phase == "second":
        second(*sys.argv[2:5])
    elif phase == "alerts":
        alerts(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown phase {phase!r}")
    print("ok")
