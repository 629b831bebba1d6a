"""Console: people (find by masked identifiers; lock, unlock, end sessions, reset the second
factor with a reason) and companies with their mandates (issue 11)."""

from __future__ import annotations

from flask import request
from werkzeug.wrappers import Response

from admin import people as people_service
from admin import services
from admin.console.base import bp, done, page, require_any, who
from admin.identity import verify_company, verify_person
from idp import context
from idp.storage.models import User

PEOPLE_PAGE = ("security-admin", "helpdesk", "auditor", "department-admin")


@bp.route("/people", methods=["GET"])
def people() -> Response:
    """Search by account id, e-mail, phone, ID number or the masked ID number."""
    require_any(*PEOPLE_PAGE)
    query = request.args.get("q", "").strip()[:320]
    session, svc = context.db_session(), context.services()
    found = (
        people_service.find_people(session, svc, query, who())
        if query
        else people_service.list_people(session, who(), limit=20)
    )
    return page("people.html", people=found, query=query)


@bp.route("/people/<user_id>", methods=["GET"])
def person(user_id: str) -> Response:
    require_any(*PEOPLE_PAGE)
    session = context.db_session()
    detail = people_service.show_person(session, context.services(), user_id, who())
    row = session.get(User, user_id)
    return page(
        "person.html",
        person=detail,
        may_act=row is not None and people_service.may_act(session, who(), row),
        notice=request.args.get("done", "")[:20],
    )


@bp.route("/people/<user_id>/<action>", methods=["POST"])
def person_action(user_id: str, action: str) -> Response:
    """unlock | disable | enable | end-sessions | reset-mfa (with a reason) | verify (an
    identity verification seen at the counter or checked with the registry) | unlink-upstream
    (an upstream federation link, with a reason)."""
    session, svc = context.db_session(), context.services()
    if action == "unlock":
        people_service.unlock_person(session, svc, user_id, who())
    elif action in ("disable", "enable"):
        status = "disabled" if action == "disable" else "active"
        people_service.set_person_status(session, svc, user_id, status, who())
    elif action == "end-sessions":
        people_service.end_person_sessions(session, svc, user_id, who())
    elif action == "verify":
        form = request.form
        verify_person(
            session,
            svc,
            user_id,
            {"level": form.get("level", ""), "method": form.get("method", "")},
            who(),
        )
    elif action == "unlink-upstream":
        people_service.remove_upstream_link(
            session,
            svc,
            user_id,
            request.form.get("link_id"),
            request.form.get("reason", ""),
            who(),
        )
    elif action == "reset-mfa":
        people_service.reset_second_factor(
            session, svc, user_id, request.form.get("reason", ""), who()
        )
    else:
        raise services.AdminInputError("no such action", status=404)
    return done("console.person", action, user_id=user_id)


# ------------------------------------------------------------------ companies and mandates
@bp.route("/companies", methods=["GET"])
def companies() -> Response:
    query = request.args.get("q", "").strip()[:200]
    rows = people_service.companies(context.db_session(), context.services(), query, who())
    return page(
        "companies.html",
        companies=rows,
        query=query,
        may_status="security-admin" in who().roles,
        may_mandate="department-admin" in who().roles,
        notice=request.args.get("done", "")[:20],
    )


@bp.route("/companies/<ref>/status", methods=["POST"])
def company_status(ref: str) -> Response:
    """Suspend, deregister or reactivate (security admins): leaving active ends mandates."""
    require_any("security-admin")
    services.change_entity_status(
        context.db_session(),
        context.services(),
        ref,
        request.form.get("status", ""),
        who().actor,
    )
    return done("console.companies", "status", q=ref)


@bp.route("/companies/<ref>/verify", methods=["POST"])
def company_verify(ref: str) -> Response:
    """Verify a company again (security admins): the enterprise registry (L3) or an
    electronic business licence (L5)."""
    require_any("security-admin")
    data = {"method": request.form.get("method", "")}
    if request.form.get("presentation"):
        data["presentation"] = request.form["presentation"]
    verify_company(context.db_session(), context.services(), ref, data, who())
    return done("console.companies", "verified", q=ref)


@bp.route("/companies/<ref>/mandates", methods=["POST"])
def company_mandate(ref: str) -> Response:
    """Record a mandate signed in person (department admins), until a date (China time)."""
    require_any("department-admin")
    form = request.form
    services.grant_mandate(
        context.db_session(),
        context.services(),
        {
            "entity": ref,
            "user": form.get("user", "").strip(),
            "role": form.get("role", "").strip(),
            "until": form.get("until", "").strip(),
            "accepted": True,
        },
        who().actor,
    )
    return done("console.companies", "granted", q=ref)


@bp.route("/companies/<ref>/mandates/<user>/revoke", methods=["POST"])
def company_mandate_revoke(ref: str, user: str) -> Response:
    require_any("department-admin")
    services.revoke_mandate(context.db_session(), context.services(), ref, user, who().actor)
    return done("console.companies", "revoked", q=ref)
