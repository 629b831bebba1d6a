"""Pages a person sees when something fails, and the page chrome (issue 15 items 6-8).

An error page explains in the page's language what happened and what to do, links home and
shows the request's reference number, which is also the ``X-Request-Id`` header and the id
under which the developer detail is logged.
"""

from __future__ import annotations

import logging
import re

from tests.helpers import csrf_token

REFERENCE = re.compile(r'id="request-id" translate="no">([^<]+)<')


def _reference(resp) -> str:  # type: ignore[no-untyped-def]
    found = REFERENCE.search(resp.get_data(as_text=True))
    assert found, resp.get_data(as_text=True)
    return found.group(1)


def test_not_found_is_explained_in_chinese_with_a_link_home(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/no-such-page")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 404
    assert "找不到该页面" in html and "Not Found" not in html
    assert 'id="home-link"' in html
    assert _reference(resp) == resp.headers["X-Request-Id"]


def test_protocol_error_page_hides_the_developer_detail_but_logs_it(client, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    resp = client.get("/authorize?client_id=nobody&response_type=code")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "无法处理这次登录请求" in html and "请返回该网站或应用重新操作" in html
    assert "unknown or unapproved client" not in html
    assert 'id="error-code">invalid_client<' in html
    reference = _reference(resp)
    assert reference == resp.headers["X-Request-Id"]
    logged = [r.getMessage() for r in caplog.records if reference in r.getMessage()]
    assert any("unknown or unapproved client" in m for m in logged), logged


def test_english_pages_explain_in_english(client) -> None:  # type: ignore[no-untyped-def]
    client.set_cookie("yitong_lang", "en", domain="localhost")
    html = client.get("/no-such-page").get_data(as_text=True)
    assert 'lang="en"' in html and "Page not found" in html


def test_expired_form_is_explained_not_named(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.post("/register", data={"name": "x"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "页面已过期" in html
    assert "CSRF token" not in html


def test_brand_reads_once_and_staff_hint_needs_a_directory(client) -> None:  # type: ignore[no-untyped-def]
    html = client.get("/login").get_data(as_text=True)
    assert "一通 · 一通" not in html
    assert 'id="staff-hint"' not in html  # no directory configured in the tests' app


def test_elder_mode_is_remembered_by_the_browser(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/login").get_data(as_text=True)
    assert '<html lang="zh-CN">' in page and 'aria-pressed="false"' in page
    resp = client.post("/display/elder", data={"csrf_token": csrf_token(page), "next": "/register"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/register")
    assert "yitong_display=elder" in resp.headers["Set-Cookie"]
    html = client.get("/register").get_data(as_text=True)
    assert 'class="elder"' in html and 'aria-pressed="true"' in html
    # Off-site next and unknown modes are refused like the language switch's.
    resp = client.post(
        "/display/huge", data={"csrf_token": csrf_token(html), "next": "//evil.example"}
    )
    assert resp.headers["Location"] == "/"
    assert not any("yitong_display" in c for c in resp.headers.getlist("Set-Cookie"))
