"""The provincial ticket bridge, protocol v1 (issue 13 item 2; docs/integrating.md).

For department systems that speak neither OpenID Connect nor CAS: the browser is sent to
``/bridge/v1/login`` with the system's id and a signed request (HMAC-SHA-256 over the
canonical parameters, with a timestamp and a nonce); a one-time ticket goes to the system's
registered callback; the system exchanges it server to server, with its own credentials, for
an access token, and the token for the attributes its allow-list releases.

A bridge system is stored as a :class:`~idp.storage.models.Client` row that no OAuth flow
accepts (its only grant type is :data:`~idp.bridge.registry.BRIDGE_GRANT_TYPE`, it has no
response type), so everything clients already have holds for it without a second copy:
tickets are authorization codes of a grant (one-time by compare-and-set, bound to the
system), tokens are ordinary access tokens checked by
:func:`~idp.oauth.tokens.check_live`, acting for a company rests on the grant's
``entity_id``/``mandate_id`` (:mod:`idp.interaction.acting`), and logout reaches the
system through :func:`~idp.interaction.sessions.end_sessions` (back-channel logout tokens
and front-channel frames).

- :mod:`idp.bridge.registry`: registering systems (CLI, admin API).
- :mod:`idp.bridge.protocol`: signed requests, tickets, tokens, user info, logout.
"""
