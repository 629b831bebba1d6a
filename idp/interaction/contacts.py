"""Confirmed contact points (issue 15 item 2): an e-mail address counts only once its link
is followed; telling a person something at the contact points they confirmed.

A phone number is confirmed by an SMS code (:func:`idp.interaction.self_service.
start_phone_change` and :func:`~idp.interaction.self_service.verify_phone_change`, the same
path for registration and for a change).  An e-mail address is confirmed by a link: signed,
:data:`LINK_TTL` long, carrying the account and the address, spent once
(:func:`~idp.storage.repo.consume_once`).  Following the link shows a button and only the
POST confirms, so a mail scanner that fetches every link confirms nothing.  Until then the
address is no login name, no reset channel, and ``email_verified`` says ``false``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets

from flask import url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeSerializer

from adapters.base import AdapterError
from adapters.mail import mask_address
from idp import audit, context
from idp.accounts.identifiers import IdentifierError, normalize_email
from idp.accounts.people import confirmed_holder, release_unconfirmed
from idp.interaction import mfa
from idp.interaction.login import Refused
from idp.interaction.sealed import stash_sealed, unstash_sealed
from idp.services import Services
from idp.storage import repo
from idp.storage.models import User, utcnow

log = logging.getLogger(__name__)

LINK_TTL = 86400  # seconds an e-mailed confirmation link stays valid
LINK_SALT = "yitong-email-confirm"
EMAIL_KEY = "yt_email_sent"  # the address a link was (perhaps) sent to, sealed in the cookie
MAX_TOKEN = 1000


@dataclasses.dataclass(frozen=True)
class EmailLink:
    """What a confirmation link carries: the account, the address and the one-time nonce."""

    uid: str
    address: str
    nonce: str
    issued: int


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(context.services().secret_key, salt=LINK_SALT)


def send_email_link(user: User, address: str) -> Refused | str:
    """Mail a confirmation link for ``address`` (rate limited); the message shown, or why not."""
    services = context.services()
    sender = services.mail_sender
    if sender is None:
        return Refused(_("E-mail cannot be sent right now."), 503)
    policies = services.policies
    for scope, key in (("mail-ip", context.client_ip()), ("mail-to", address)):
        limit = policies.get_int(
            "sms.per_ip_per_hour" if scope == "mail-ip" else "sms.per_phone_per_hour"
        )
        wait = services.rate_limiter.hit(scope, key or "-", limit, 3600)
        if wait is not None:
            return Refused(
                _("Too many codes requested. Try again in %(n)d second(s).", n=wait),
                429,
                retry_after=wait,
            )
    shown = str(_("A confirmation link was sent to %(to)s.", to=mask_address(address)))
    stash_sealed(EMAIL_KEY, "email-sent", user.id, address)
    other = confirmed_holder(context.db_session(), "email", address)
    if other is not None and other != user.id:
        # Never say that the address belongs to someone (checklist 83): the same answer as
        # a sent link; its holder is told instead, and no link exists to confirm it here.
        tell_holder(other, "email", account=user.id)
        return shown
    token = _serializer().dumps(
        {"u": user.id, "e": address, "n": secrets.token_hex(16), "i": int(utcnow().timestamp())}
    )
    link = mfa.origin_for(services.settings.issuer) + url_for("rights.email_confirm", token=token)
    subject = _("Confirm your e-mail address for Yitong")
    text = _(
        "Open this link within %(h)d hours to confirm that this address belongs to your "
        "Yitong account:\n\n%(link)s\n\nIf you did not ask for this, ignore this message.",
        h=LINK_TTL // 3600,
        link=link,
    )
    try:
        sender.send_mail(address, str(subject), str(text))
    except AdapterError:
        log.warning("confirmation mail could not be sent")
        return Refused(_("The e-mail could not be sent. Try again later."), 503)
    audit.record_now(
        services.db,
        "user.email_link_sent",
        actor=user.id,
        target=user.id,
        ip=context.client_ip(),
        details={"to": mask_address(address)},
    )
    return shown


def pending_email(user: User) -> str | None:
    """The address this browser last asked a link for (shown on the confirmation page)."""
    return unstash_sealed(EMAIL_KEY, "email-sent", user.id, LINK_TTL)


def start_email_change(user: User, raw: str) -> Refused | str:
    """Send a link to a new (or the unconfirmed current) address; it counts once followed."""
    try:
        address = normalize_email(raw[:320])
    except IdentifierError:
        return Refused(_("Enter a valid e-mail address."), 400)
    if address == user.email and user.email_verified:
        return Refused(_("This address is already confirmed."), 400)
    return send_email_link(user, address)


def open_email_link(token: str) -> EmailLink | None:
    """The link's content, or None when forged, expired, used or its account is gone."""
    if not token or len(token) > MAX_TOKEN:
        return None
    try:
        data = _serializer().loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    try:
        link = EmailLink(str(data["u"]), str(data["e"]), str(data["n"]), int(data["i"]))
    except (KeyError, TypeError, ValueError):
        return None
    age = utcnow().timestamp() - link.issued
    if age > LINK_TTL or age < -60:
        return None
    user = context.db_session().get(User, link.uid)
    if user is None or user.status not in ("active", "closing"):
        return None
    if repo.was_consumed(context.db_session(), "email-confirm", link.nonce):
        return None
    return link


def confirm_email(token: str) -> User | Refused:
    """Spend the link: the address becomes the account's confirmed e-mail (audited)."""
    link = open_email_link(token)
    if link is None:
        return Refused(_("This link has expired or was already used. Ask for a new one."), 400)
    db_session = context.db_session()
    other = confirmed_holder(db_session, "email", link.address)
    if other is not None and other != link.uid:
        return Refused(_("This address cannot be used."), 409)
    context.release_request_transaction()
    expires = dt.datetime.fromtimestamp(link.issued + LINK_TTL + 60, dt.UTC)
    if not repo.consume_once(db_session, "email-confirm", link.nonce, expires):
        return Refused(_("This link has expired or was already used. Ask for a new one."), 400)
    row = db_session.get(User, link.uid)
    assert row is not None
    ip = context.client_ip()
    old = mask_address(row.email) if row.email else None
    release_unconfirmed(db_session, "email", link.address, keep=row.id, actor=row.id, ip=ip)
    row.email, row.email_verified = link.address, True
    audit.record(
        db_session,
        "user.email_confirm",
        actor=row.id,
        target=row.id,
        ip=ip,
        details={"old": old, "new": mask_address(link.address)},
    )
    db_session.commit()
    return row


# ---------------------------------------------------------------------- telling the person
def tell(services: Services, user: User, subject: str, text: str) -> list[str]:
    """Send ``text`` to the account's *confirmed* phone and e-mail; the channels that took it.

    ``subject`` and ``text`` are message ids, translated here in the account's language
    (this runs in requests and in the CLI alike).  A failed channel is logged, not raised:
    the change it reports has happened either way.
    """
    sent: list[str] = []
    with force_locale(user.locale or "zh_CN"):
        subject_text, body = str(_(subject)), str(_(text))
    if user.phone and user.phone_verified and services.sms_sender is not None:
        try:
            services.sms_sender.send(user.phone, body)
            sent.append("sms")
        except AdapterError:
            log.warning("notice SMS could not be sent")
    if user.email and user.email_verified and services.mail_sender is not None:
        try:
            services.mail_sender.send_mail(user.email, subject_text, body)
            sent.append("email")
        except AdapterError:
            log.warning("notice mail could not be sent")
    return sent


# Message ids for :func:`tell` (extracted for translation by the marker below).
def N_(text: str) -> str:  # the gettext convention: a message id, translated later
    return text


CLAIM_RELEASED_SUBJECT = N_("Your Yitong account no longer holds an ID number")
CLAIM_RELEASED_TEXT = N_(
    "Yitong: the resident ID number entered in your account was verified by its holder, so "
    "it was removed from your account. Your account stays open. If the number is yours, "
    "bring your ID card to a service counter."
)


def tell_claim_released(services: Services, user: User) -> list[str]:
    """Tell an account that its unverified ID number went to the verified holder."""
    return tell(services, user, CLAIM_RELEASED_SUBJECT, CLAIM_RELEASED_TEXT)


COLLISION_SUBJECT = N_("Someone tried to use your details on Yitong")
COLLISION_TEXT = N_(
    "Yitong: someone tried to use the ID number, mobile number or e-mail address of your "
    "account for another account. Nothing changed in your account. If it was you, sign in "
    "or reset your password instead; otherwise there is nothing to do."
)


def tell_holder(holder_id: str, field: str, *, account: str) -> list[str]:
    """Someone typed what ``holder_id`` holds for sure (a confirmed phone or e-mail, an ID
    number verified at L3+): tell the holder at their confirmed contact points, since the
    person who typed it must not learn it (checklist 83).  Audited; at most
    ``sms.per_phone_per_hour`` notices an hour to one account, so nobody can flood a holder.

    The audit entry names the typing ``account`` in its details, not as its actor: the
    activity list of that account's data page (actor or target) must not show it either."""
    services = context.services()
    limit = services.policies.get_int("sms.per_phone_per_hour")
    told: list[str] = []
    if services.rate_limiter.hit("holder-notice", holder_id, limit, 3600) is None:
        holder = context.db_session().get(User, holder_id)
        if holder is not None:
            told = tell(services, holder, COLLISION_SUBJECT, COLLISION_TEXT)
    audit.record_now(
        services.db,
        "user.contact_collision",
        actor="self",
        target=holder_id,
        ip=context.client_ip(),
        details={"field": field, "told": told, "account": account},
    )
    return told
