"""An integrated department service (social security): a third-party relying party.

Yitong asks the citizen's consent the first time this service signs them in, and remembers
it.  Run by ``yitong demo`` on http://localhost:5002 (``python -m examples.service.app``
with the ``RP_*`` variables described in :mod:`examples.rp_common`).
"""

from __future__ import annotations

from flask import Flask

from examples.rp_common import RpConfig, create_rp_app, serve


def make_config() -> RpConfig:
    return RpConfig.from_env(
        "service",
        "社会保障服务",
        default_port=5002,
        default_scope="openid profile entity",
    )


def create_app(config: RpConfig | None = None) -> Flask:
    return create_rp_app(config or make_config(), color="#1f7a4d")


def main() -> None:
    config = make_config()
    serve(create_app(config), config)


if __name__ == "__main__":
    main()
