"""The CAS server (CAS protocol 1.0, 2.0 and 3.0), on the same SSO session as OpenID Connect.

Spec: Apereo CAS Protocol 3.0 (https://apereo.github.io/cas/7.0.x/protocol/CAS-Protocol-Specification.html).
Issue 13 item 1: department systems that speak only CAS sign in with the session a citizen
already has at the portal.

- :mod:`idp.cas.registry`: the registered services (exact service URL, or an anchored
  pattern with a literal host that an administrator sets; never a bare wildcard) and the
  attributes released to each.
- :mod:`idp.cas.tickets`: service tickets (``ST-`` + 256 random bits; only the digest is
  stored), spent once by compare-and-set, bound to the exact service URL, short-lived
  (``cas_ticket_lifetime``), audited at issue and at every validation; and single logout,
  queued in the back-channel outbox by :func:`idp.interaction.sessions.end_sessions`.
- :mod:`idp.cas.xml`: the validation responses and the SAML ``LogoutRequest``, built with an
  XML serializer (every value escaped).  Nothing here parses XML.

Proxying (``/cas/proxy``, proxy tickets, ``pgtUrl``) is not offered: no proxy-granting
ticket is ever issued, so ``/cas/proxyValidate`` validates service tickets only (§2.6).
"""
