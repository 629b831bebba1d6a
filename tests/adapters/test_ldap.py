"""LdapDirectory against real slapd servers (SECURITY-CHECKLIST items 85-93 and 116).

Every test talks to a real slapd from ``tests/services/slapd.py``; where a test claims that
something did *not* reach the directory (no bind, no plaintext password), it reads slapd's
own log to prove it.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest

from adapters.base import AdapterConfigError, AdapterUnavailable, InvalidCredentials
from adapters.ldap import DirectoryConfig, LdapDirectory, normalize_dn
from adapters.registry import DirectoryConfigErrors, build_directories
from tests.services.slapd import (
    AD,
    AD_GUIDS,
    HRSS,
    NR,
    LdapTestCA,
    Slapd,
    ad_table,
    hrss_table,
    hrss_tree,
    nr_table,
)

pytestmark = pytest.mark.slapd

WANG = f"uid=wang.fang,ou=people,{HRSS}"


def directory(directory_id: str, table: dict[str, Any]) -> LdapDirectory:
    return LdapDirectory(DirectoryConfig.from_mapping(directory_id, table))


@pytest.fixture(scope="module")
def hrss(slapd_hrss: Slapd, ldap_test_ca: LdapTestCA) -> Iterator[LdapDirectory]:
    d = directory("hrss", hrss_table(slapd_hrss, ldap_test_ca))
    yield d
    d.close()


@pytest.fixture(scope="module")
def nr(slapd_nr: Slapd) -> Iterator[LdapDirectory]:
    d = directory("nr", nr_table(slapd_nr))
    yield d
    d.close()


@pytest.fixture(scope="module")
def ad(slapd_ad: Slapd) -> Iterator[LdapDirectory]:
    d = directory("ga", ad_table(slapd_ad))
    yield d
    d.close()


def binds_for(server: Slapd, mark: int, dn_fragment: str) -> list[str]:
    return [ln for ln in server.binds_since(mark) if dn_fragment in ln]


# ----------------------------------------------------------------------------- each department
def test_hrss_login_openldap_shape_over_ldaps(hrss: LdapDirectory, slapd_hrss: Slapd) -> None:
    # checklist 86: identity confirmed with who-am-I after the bind
    mark = slapd_hrss.log_mark()
    who = hrss.authenticate("wang.fang", "Wf-2017-secret!")
    assert who.source == "hrss"
    assert who.username == "wang.fang"
    assert who.name == "王芳"
    assert who.dn == WANG
    assert who.email == "wang.fang@hrss.ln.gov.example"
    assert who.phone == "+86 24 2300 0001"
    assert who.attributes["employee_number"] == "HRSS-0001"
    assert who.attributes["given_name"] == "芳"
    assert who.groups == ("case-officers",)
    assert who.roles == ()
    assert len(who.key) == 36 and who.key.count("-") == 4  # entryUUID, not the uid
    # RFC 4532 who-am-I was asked after the user's bind.
    slapd_hrss.wait_for(mark, 'BIND dn="uid=wang.fang', "EXT oid=1.3.6.1.4.1.4203.1.11.3")


def test_hrss_names_with_comma_and_quote(hrss: LdapDirectory) -> None:
    li = hrss.authenticate("li.wei", "Lw-2017-secret!")
    # LDIF values are not DN-escaped: the stored cn really is "Li\, Wei".
    assert li.name == "Li\\, Wei"
    assert li.groups == ("it-admins",)
    assert li.roles == ("department_admin",)
    obrien = hrss.authenticate("o'brien", "Ob-2017-secret!")
    assert obrien.dn == f"uid=o'brien,ou=people,{HRSS}"
    assert obrien.name == "Sean O'Brien"


def test_nr_login_by_mail_with_posix_groups(nr: LdapDirectory) -> None:
    zhao = nr.authenticate("zhao.lei@nr.ln.gov.example", "Zl-2017-secret!")
    assert zhao.source == "nr"
    assert zhao.username == "zhao.lei@nr.ln.gov.example"
    assert zhao.dn == f"cn=Zhao Lei,ou=survey,ou=staff,{NR}"
    assert zhao.attributes["title"] == "Senior Surveyor"
    assert zhao.groups == ("approvers", "surveyors")
    assert zhao.roles == ("approver",)
    chen = nr.authenticate("chen.jing@nr.ln.gov.example", "Cj-2017-secret!")
    assert chen.groups == ("surveyors",)
    assert chen.roles == ()


def test_nr_dn_with_escaped_comma_and_chinese(nr: LdapDirectory, slapd_nr: Slapd) -> None:
    # checklist 86 and 89: slapd's who-am-I spells the comma \2C where the search said \, ;
    # the identity check compares DNs, not strings, and the Chinese password binds as UTF-8.
    mark = slapd_nr.log_mark()
    zhang = nr.authenticate("zhang.wei@nr.ln.gov.example", "张伟-2017-secret!")
    assert zhang.name == "Zhang, Wei (张伟)"
    assert zhang.attributes["title"] == "高级测绘师"
    assert normalize_dn(zhang.dn or "") == normalize_dn(
        f"cn=Zhang\\2C Wei (张伟),ou=survey,ou=staff,{NR}"
    )
    slapd_nr.wait_for(mark, 'BIND dn="cn=Zhang', "mech=SIMPLE")


def test_ad_shape_samaccountname_upn_objectguid_memberof(ad: LdapDirectory) -> None:
    liu = ad.authenticate("liu.yang", "Ly-2017-secret!")
    assert liu.key == str(AD_GUIDS["liu.yang"])  # objectGUID in AD's little-endian layout
    assert liu.name == "刘洋"
    assert liu.dn == f"cn=刘洋,cn=Users,{AD}"
    assert liu.attributes["title"] == "科长"
    assert liu.groups == ("Dept Admins", "Officers")
    assert liu.roles == ("department_admin",)
    by_upn = ad.authenticate("liu.yang@ga.ln.gov.example", "Ly-2017-secret!")
    assert by_upn.key == liu.key
    zhang = ad.authenticate("zhang.min", "Zm-2017-secret!")  # UAC 66048: enabled
    assert zhang.groups == ("Officers",)


def test_role_map_by_group_dn(slapd_ad: Slapd) -> None:
    # AD administrators often name groups by DN; case and spacing differ from the server's.
    d = directory(
        "ga", ad_table(slapd_ad, role_map={f"CN=officers, CN=users,{AD.upper()}": ["officer"]})
    )
    assert d.authenticate("zhang.min", "Zm-2017-secret!").roles == ("officer",)
    d.close()


@pytest.mark.parametrize(
    ("which", "username", "password"),
    [
        ("hrss", "wang.fang", "wrong"),
        ("hrss", "nobody", "Wf-2017-secret!"),
        ("nr", "zhao.lei@nr.ln.gov.example", "Cj-2017-secret!"),  # another person's password
        ("ad", "liu.yang", "ly-2017-secret!"),
    ],
)
def test_wrong_credentials_refused(
    which: str, username: str, password: str, request: pytest.FixtureRequest
) -> None:
    d: LdapDirectory = request.getfixturevalue(which)
    with pytest.raises(InvalidCredentials):
        d.authenticate(username, password)


# ----------------------------------------------------------------------------- checklist 85
@pytest.mark.parametrize("password", ["", " ", "   ", "\t", "\n", " \t\r\n "])
def test_checklist_85_empty_password_never_bound(
    password: str, ad: LdapDirectory, slapd_ad: Slapd
) -> None:
    # The "ad" server accepts unauthenticated binds, as Active Directory does: prove it...
    dn = f"cn=刘洋,cn=Users,{AD}"
    shown = subprocess.run(
        ["ldapwhoami", "-x", "-H", slapd_ad.url, "-D", dn, "-w", ""],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert shown.returncode == 0 and shown.stdout.strip() == "anonymous"
    # ...then check that our login never sends such a bind at all.
    mark = slapd_ad.log_mark()
    with pytest.raises(InvalidCredentials, match="before bind"):
        ad.authenticate("liu.yang", password)
    log = slapd_ad.log_since(mark)
    assert " BIND " not in log and " SRCH " not in log, log  # not even a search


def test_checklist_85_empty_password_refused_without_network() -> None:
    # A directory nobody listens on: the refusal comes before any connection is tried,
    # so it is InvalidCredentials, not AdapterUnavailable.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = directory("x", nr_table([f"ldap://127.0.0.1:{port}"]))
    for password in ("", "  "):
        with pytest.raises(InvalidCredentials):
            d.authenticate("zhao.lei@nr.ln.gov.example", password)
    assert all(h.failures == 0 for h in d.health)


# ----------------------------------------------------------------------------- checklist 87 / 88
INJECTIONS = [
    "*",
    "*)(uid=*",
    "al*",
    "(",
    ")",
    "\\00",
    "\x00",
    "alice)(|(uid=*",
    "wang.fang)(uid=*",
    "*wang*",
    "wang.fang\\",
    "\\2a",
]


@pytest.mark.parametrize("username", INJECTIONS)
def test_checklist_87_filter_injection_usernames(
    username: str, hrss: LdapDirectory, slapd_hrss: Slapd
) -> None:
    mark = slapd_hrss.log_mark()
    with pytest.raises(InvalidCredentials):
        hrss.authenticate(username, "Wf-2017-secret!")
    # Nothing matched, so no user bind was attempted for anyone.
    assert binds_for(slapd_hrss, mark, "ou=people") == []
    if "\x00" not in username:
        log = slapd_hrss.log_since(mark)
        filters = [ln for ln in log.splitlines() if "SRCH base=" in ln and "uid=" in ln]
        assert filters, log
        # The name arrived as escaped literal characters (\2a \28 \29 \5c \00).
        assert "(uid=*)" not in filters[-1]
        assert "(|(uid=*" not in filters[-1]


def test_checklist_87_escaping_is_what_stops_the_wildcard(slapd_hrss: Slapd) -> None:
    # Control: the same filter built WITHOUT escaping would match several people.
    conn = slapd_hrss.admin("hrss")
    assert isinstance(conn, ldap3.Connection)
    conn.search(f"ou=people,{HRSS}", "(&(objectClass=inetOrgPerson)(uid=*))", attributes=["uid"])
    assert len(conn.entries) > 1
    conn.unbind()


def test_checklist_87_more_than_one_entry_fails(nr: LdapDirectory, slapd_nr: Slapd) -> None:
    mark = slapd_nr.log_mark()
    with pytest.raises(InvalidCredentials, match="more than one"):
        nr.authenticate("twins@nr.ln.gov.example", "Tw-2017-secret!")
    assert binds_for(slapd_nr, mark, "Twin") == []


def test_checklist_88_password_star_is_only_ever_a_bind(
    hrss: LdapDirectory, slapd_hrss: Slapd
) -> None:
    mark = slapd_hrss.log_mark()
    with pytest.raises(InvalidCredentials):
        hrss.authenticate("wang.fang", "*")
    log = slapd_hrss.wait_for(mark, 'BIND dn="uid=wang.fang', "err=49")  # the bind said no
    assert "userPassword" not in log  # never searched on the password


# ----------------------------------------------------------------------------- checklist 92
def test_checklist_92_disabled_accounts_refused(
    slapd_hrss: Slapd, ldap_test_ca: LdapTestCA, ad: LdapDirectory
) -> None:
    with_filter = directory("hrss", hrss_table(slapd_hrss, ldap_test_ca))
    without = directory("hrss", hrss_table(slapd_hrss, ldap_test_ca, disabled_filter=None))
    try:
        # Control: the password is right; only the disabled filter refuses the login.
        assert without.authenticate("disabled.user", "Du-2017-secret!").username == "disabled.user"
        with pytest.raises(InvalidCredentials):
            with_filter.authenticate("disabled.user", "Du-2017-secret!")
    finally:
        with_filter.close()
        without.close()
    with pytest.raises(InvalidCredentials):  # AD: userAccountControl 514 (ACCOUNTDISABLE)
        ad.authenticate("ex.staff", "Ex-2017-secret!")


def test_lookup_by_stable_key(hrss: LdapDirectory, ad: LdapDirectory) -> None:
    wang = hrss.authenticate("wang.fang", "Wf-2017-secret!")
    again = hrss.lookup(wang.key)
    assert again is not None and again.dn == WANG and again.groups == ("case-officers",)
    assert hrss.lookup("00000000-0000-4000-8000-000000000000") is None
    assert hrss.lookup("*") is None
    assert hrss.lookup(f"dn:{WANG}") is None  # the entry has an entryUUID: that is its key
    assert hrss.lookup("dn:not a dn") is None
    assert hrss.lookup(f"dn:uid=gone,ou=people,{HRSS}") is None
    assert all(h.failures == 0 for h in hrss.health)
    liu = ad.lookup(str(AD_GUIDS["liu.yang"]))
    assert liu is not None and liu.username == "liu.yang"
    assert ad.lookup(str(AD_GUIDS["ex.staff"])) is None  # disabled counts as gone


def test_dn_is_the_key_when_the_entry_has_no_stable_id(
    slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    d = directory("hrss", hrss_table(slapd_hrss, ldap_test_ca, key_attribute="objectGUID"))
    wang = d.authenticate("wang.fang", "Wf-2017-secret!")
    assert wang.key == f"dn:{WANG}"
    assert d.lookup(wang.key) is not None
    assert d.lookup(f"dn:UID=Wang.Fang,OU=people,{HRSS}") is not None  # same DN, other spelling
    assert d.lookup("dn:uid=disabled.user,ou=people," + HRSS) is None  # disabled
    d.close()


def test_listing_pages_and_marks_disabled(hrss: LdapDirectory) -> None:
    listing = hrss.listing(page_size=2)  # several RFC 2696 pages
    names = {dn.split(",")[0] for dn in listing.entries.values()}
    assert {"uid=wang.fang", "uid=li.wei", "uid=o'brien", "uid=disabled.user", "uid=jdoe"} <= names
    disabled = [listing.entries[k] for k in listing.disabled]
    assert disabled == [f"uid=disabled.user,ou=people,{HRSS}"]


# ----------------------------------------------------------------------------- checklist 90
def tls_refused(d: LdapDirectory, server: Slapd) -> str:
    mark = server.log_mark()
    with pytest.raises(AdapterUnavailable) as caught:
        d.authenticate("wang.fang", "Wf-2017-secret!")
    assert server.binds_since(mark) == []  # neither the service nor the user password went out
    return str(caught.value)


def test_checklist_90_ldaps_without_our_ca_refused(slapd_hrss: Slapd) -> None:
    # No ca_file: the system trust store does not know the test CA (a "self-signed" server).
    message = tls_refused(directory("hrss", hrss_table(slapd_hrss, None)), slapd_hrss)
    assert "certificate verify failed" in message


def test_checklist_90_ldaps_wrong_ca_refused(slapd_hrss: Slapd, ldap_test_ca: LdapTestCA) -> None:
    table = hrss_table(slapd_hrss, ldap_test_ca, ca_file=str(ldap_test_ca.other_ca_file))
    assert "certificate verify failed" in tls_refused(directory("hrss", table), slapd_hrss)


def test_checklist_90_ldaps_wrong_hostname_refused(
    slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    # Right CA, but the certificate names "localhost" and we connect to 127.0.0.1.
    table = hrss_table([slapd_hrss.ldaps_url_by_ip], ldap_test_ca)
    assert "doesn't match" in tls_refused(directory("hrss", table), slapd_hrss)


def test_checklist_90_starttls_with_valid_certificate(
    slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    table = hrss_table([slapd_hrss.starttls_url], ldap_test_ca, tls="starttls")
    d = directory("hrss", table)
    mark = slapd_hrss.log_mark()
    assert d.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG
    log = slapd_hrss.wait_for(
        mark, 'BIND dn="uid=wang.fang,ou=people,dc=hrss,dc=ln,dc=gov,dc=cn" mech'
    )
    binds = [ln for ln in log.splitlines() if "mech=SIMPLE" in ln]
    # slapd logs the connection's security strength: every bind happened inside TLS.
    assert binds and all(int(re.findall(r" ssf=(\d+)", ln)[-1]) >= 128 for ln in binds), binds
    d.close()


@pytest.mark.parametrize("problem", ["wrong_ca", "wrong_host"])
def test_checklist_90_starttls_failure_never_falls_back(
    problem: str, slapd_hrss: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    if problem == "wrong_ca":
        table = hrss_table(
            [slapd_hrss.starttls_url],
            ldap_test_ca,
            tls="starttls",
            ca_file=str(ldap_test_ca.other_ca_file),
        )
    else:
        table = hrss_table([slapd_hrss.url], ldap_test_ca, tls="starttls")
    tls_refused(directory("hrss", table), slapd_hrss)


def test_checklist_90_starttls_unsupported_never_falls_back(slapd_nr: Slapd) -> None:
    # The nr server has no TLS at all: StartTLS is refused and nothing is sent in clear.
    table = nr_table(
        slapd_nr,
        tls="starttls",
        allow_plaintext=False,
        anonymous_search=False,
        bind_dn=f"cn=admin,{NR}",
        bind_password="root-secret",
    )
    d = directory("nr", table)
    mark = slapd_nr.log_mark()
    with pytest.raises(AdapterUnavailable, match=r"(?i)starttls|tls"):
        d.authenticate("zhao.lei@nr.ln.gov.example", "Zl-2017-secret!")
    # StartTLS asked for, refused, and then nothing else on that connection.
    log = slapd_nr.wait_for(mark, "EXT oid=1.3.6.1.4.1.1466.20037", "err=2")
    assert " BIND " not in log and " SRCH " not in log


def test_checklist_90_insecure_settings_need_explicit_permission(slapd_nr: Slapd) -> None:
    with pytest.raises(AdapterConfigError, match="allow_plaintext"):
        DirectoryConfig.from_mapping("nr", nr_table(slapd_nr, allow_plaintext=False))
    with pytest.raises(AdapterConfigError, match="validate_certificate"):
        DirectoryConfig.from_mapping(
            "x", hrss_table(["ldaps://localhost:636"], None, validate_certificate=False)
        )
    # ldap3's own default is CERT_NONE; ours is CERT_REQUIRED with a hostname check.
    config = DirectoryConfig.from_mapping("x", hrss_table(["ldaps://dc1.example:636"], None))
    tls = LdapDirectory(config).pool._tls(config.urls[0])
    assert tls is not None
    import ssl

    assert tls.validate == ssl.CERT_REQUIRED
    assert tls.valid_names == ["dc1.example"]


# ----------------------------------------------------------------------------- checklist 93
@pytest.fixture
def evil_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener standing in for ldap://evil.example; records every connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except OSError:
                continue
            seen.append(f"{addr[0]}:{addr[1]}")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join(timeout=2)
    server.close()


def test_checklist_93_referrals_not_followed(
    make_slapd: Callable[..., Slapd],
    ldap_test_ca: LdapTestCA,
    evil_listener: tuple[int, list[str]],
) -> None:
    port, seen = evil_listener
    evil = f"ldap://127.0.0.1:{port}"
    # ou=moved answers every search under it with a referral result (code 10); uid=evil is
    # a search continuation reference inside the real user base.
    referrals = f"""
dn: ou=moved,{HRSS}
objectClass: referral
objectClass: extensibleObject
ou: moved
ref: {evil}/ou=people,{HRSS}

dn: uid=evil,ou=people,{HRSS}
objectClass: referral
objectClass: extensibleObject
uid: evil
ref: {evil}/uid=evil,ou=people,{HRSS}
"""
    server = make_slapd("hrss-referral", hrss_tree(referrals), tls=True)
    # Control: ldap3 left at its defaults chases the referral, taking our credentials along.
    control = ldap3.Connection(
        ldap3.Server(server.url, get_info=ldap3.NONE, connect_timeout=1),
        user=f"cn=yitong-reader,{HRSS}",
        password="svc-secret-2024",
        auto_bind=True,
        receive_timeout=2,
    )
    with contextlib.suppress(ldap3.core.exceptions.LDAPException, OSError):
        # The stand-in hangs up at once, which ldap3 reports as an error; what counts is
        # that it connected at all.
        control.search(f"ou=moved,{HRSS}", "(uid=wang.fang)", attributes=["uid"])
    control.unbind()
    assert seen, "control: ldap3's default should have chased the referral"
    seen.clear()

    moved = directory("hrss", hrss_table(server, ldap_test_ca, user_base=f"ou=moved,{HRSS}"))
    with pytest.raises(AdapterUnavailable, match=r"(?i)referral"):
        moved.authenticate("wang.fang", "Wf-2017-secret!")
    moved.close()

    d = directory("hrss", hrss_table(server, ldap_test_ca))
    with pytest.raises(InvalidCredentials):
        d.authenticate("evil", "Wf-2017-secret!")
    assert d.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG  # references skipped
    with pytest.raises(AdapterUnavailable, match="referral"):
        d.listing()  # a sync never mistakes a partial tree for deleted people
    d.close()
    assert seen == []


def test_checklist_93_following_referrals_needs_a_host_list() -> None:
    with pytest.raises(AdapterConfigError, match="referral_hosts"):
        DirectoryConfig.from_mapping(
            "x", hrss_table(["ldaps://localhost:636"], None, allow_referrals=True)
        )


# ----------------------------------------------------------------------------- checklist 116
def test_checklist_116_stopped_directory_answers_at_once_others_unaffected(
    make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA, nr: LdapDirectory
) -> None:
    server = make_slapd("hrss-stop", hrss_tree(), tls=True)
    hrss = directory("hrss", hrss_table(server, ldap_test_ca, circuit_reset_seconds=30))
    assert hrss.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG
    server.stop()
    for _ in range(3):
        with pytest.raises(AdapterUnavailable):
            hrss.authenticate("wang.fang", "Wf-2017-secret!")
        # Another department keeps working meanwhile.
        assert nr.authenticate("zhao.lei@nr.ln.gov.example", "Zl-2017-secret!").source == "nr"
    assert hrss.health[0].state == "open"
    # Breaker open: answered without touching the network (said so, not timed).
    with pytest.raises(AdapterUnavailable, match="circuit open"):
        hrss.authenticate("wang.fang", "Wf-2017-secret!")
    hrss.close()


def test_checklist_116_hung_directory_times_out_and_isolates(
    make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA, nr: LdapDirectory
) -> None:
    server = make_slapd("hrss-hang", hrss_tree(), tls=True)
    hrss = directory("hrss", hrss_table(server, ldap_test_ca, circuit_failures=1))
    assert hrss.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG
    server.pause()  # accepts TCP, answers nothing: a blackholed or hung DC
    try:
        outcome: dict[str, Any] = {}

        def hung_login() -> None:
            started = time.monotonic()
            try:
                hrss.authenticate("wang.fang", "Wf-2017-secret!")
            except AdapterUnavailable as exc:
                outcome["error"] = exc
            outcome["took"] = time.monotonic() - started

        thread = threading.Thread(target=hung_login)
        thread.start()
        time.sleep(0.1)
        # While HRSS hangs (its login still waiting), NR answers.
        assert nr.authenticate("chen.jing@nr.ln.gov.example", "Cj-2017-secret!").source == "nr"
        assert thread.is_alive() and "error" not in outcome
        thread.join(timeout=hrss.config.timeout + 30)  # ends by its own timeout, not ours
        assert not thread.is_alive()
        assert isinstance(outcome.get("error"), AdapterUnavailable)
        with pytest.raises(AdapterUnavailable, match="circuit open"):
            hrss.authenticate("wang.fang", "Wf-2017-secret!")
    finally:
        server.resume()
    time.sleep(hrss.config.circuit_reset_seconds + 0.1)
    # Half-open: one probe goes through, succeeds, and closes the breaker again.
    assert hrss.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG
    assert hrss.health[0].state == "closed"
    hrss.close()


def test_checklist_116_failover_to_second_server(
    make_slapd: Callable[..., Slapd], slapd_hrss_replica: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    primary = make_slapd("hrss-primary", hrss_tree(), tls=True)
    d = directory(
        "hrss", hrss_table([primary.ldaps_url, slapd_hrss_replica.ldaps_url], ldap_test_ca)
    )
    first = d.authenticate("wang.fang", "Wf-2017-secret!")
    replica_mark = slapd_hrss_replica.log_mark()
    primary.stop()  # killed mid-run: pooled connections to it are now dead
    second = d.authenticate("wang.fang", "Wf-2017-secret!")
    assert second.key == first.key  # replicas share entryUUIDs: the same person
    slapd_hrss_replica.wait_for(replica_mark, 'BIND dn="uid=wang.fang')
    d.close()


def test_checklist_116_first_url_unreachable(
    slapd_hrss_replica: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    d = directory(
        "hrss",
        hrss_table([f"ldaps://localhost:{dead}", slapd_hrss_replica.ldaps_url], ldap_test_ca),
    )
    assert d.authenticate("li.wei", "Lw-2017-secret!").roles == ("department_admin",)
    assert d.health[0].failures == 1 and d.health[1].failures == 0
    d.close()


def test_pooled_connections_reused_and_replaced_after_restart(
    make_slapd: Callable[..., Slapd], ldap_test_ca: LdapTestCA
) -> None:
    server = make_slapd("hrss-pool", hrss_tree(), tls=True)
    d = directory("hrss", hrss_table(server, ldap_test_ca))
    d.authenticate("wang.fang", "Wf-2017-secret!")  # opens one search, one bind connection
    time.sleep(0.05)
    mark = server.log_mark()
    for _ in range(10):
        d.authenticate("wang.fang", "Wf-2017-secret!")
    log = server.log_since(mark, settle=0.3)
    assert log.count(" ACCEPT ") == 0  # the pooled connections carried all ten
    assert log.count("mech=SIMPLE") == 10  # one user bind per login; no service re-binds
    server.stop()
    server.start()  # same ports; the pooled sockets are now stale
    assert d.authenticate("wang.fang", "Wf-2017-secret!").dn == WANG
    d.close()


def test_concurrent_logins_share_a_small_pool(hrss: LdapDirectory) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                assert hrss.authenticate("li.wei", "Lw-2017-secret!").username == "li.wei"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []


def test_missing_slapd_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.services import slapd as fixtures

    monkeypatch.setattr(fixtures, "_slapd_binary", lambda: "")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="slapd is not installed"):
        fixtures.require_slapd()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and slapd is not installed"):
        fixtures.require_slapd()


# ----------------------------------------------------------------------------- configuration
def test_registry_builds_every_department(
    slapd_hrss: Slapd, slapd_nr: Slapd, slapd_ad: Slapd, ldap_test_ca: LdapTestCA
) -> None:
    built = build_directories(
        {
            "hrss": hrss_table(slapd_hrss, ldap_test_ca),
            "nr": nr_table(slapd_nr),
            "ga": ad_table(slapd_ad),
        }
    )
    assert sorted(built) == ["ga", "hrss", "nr"]
    assert built["ga"].display_name == "公安厅"
    assert built["nr"].authenticate("zhao.lei@nr.ln.gov.example", "Zl-2017-secret!").source == "nr"
    for d in built.values():
        d.close()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"urls": []}, "urls"),
        ({"urls": ["http://dc1"]}, "urls"),
        ({"urls": ["ldap://dc1"]}, "urls"),  # ldap:// under tls = "ldaps"
        ({"user_base": ""}, "user_base"),
        ({"bind_password": None}, "bind_password"),
        ({"bind_dn": None}, "bind_dn"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"pool_size": "4"}, "pool_size"),
        ({"user_filter": "uid={username}"}, "user_filter"),
        ({"user_filter": "(&(uid={username}))"}, "user_filter"),
        ({"group_mode": "search", "group_base": None}, "group_base"),
        ({"tls": "sometimes"}, "tls"),
        ({"colour": "blue"}, "colour"),
        ({"attributes": {"Name": "cn"}}, "attributes.Name"),
        ({"role_map": {"admins": 3}}, "role_map.admins"),
    ],
)
def test_configuration_errors_name_directory_and_key(change: dict[str, Any], key: str) -> None:
    table = hrss_table(["ldaps://dc1.example:636"], None)
    table.update(change)
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(AdapterConfigError) as caught:
        build_directories({"hrss": table})
    assert caught.value.source == "directories.hrss"
    assert caught.value.key == key
    assert str(caught.value).startswith(f"directories.hrss.{key}: ")


def test_configuration_errors_are_reported_together() -> None:
    good = hrss_table(["ldaps://dc1.example:636"], None)
    with pytest.raises(DirectoryConfigErrors) as caught:
        build_directories({"a": {**good, "urls": []}, "ok": good, "Bad Id": good})
    assert [e.source for e in caught.value.errors] == ["directories.a", "directories.Bad Id"]


def test_bind_password_file(tmp_path: Any) -> None:
    secret = tmp_path / "bind-password"
    secret.write_text("from-a-file\n", encoding="utf-8")
    table = hrss_table(["ldaps://dc1.example:636"], None, bind_password_file=str(secret))
    del table["bind_password"]
    config = DirectoryConfig.from_mapping("hrss", table)
    assert config.bind_password == "from-a-file"
    assert "from-a-file" not in repr(config) and "from-a-file" not in str(config.describe())
