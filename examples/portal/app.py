"""The provincial portal: a first-party relying party, so Yitong asks no consent for it.

Run by ``yitong demo`` on http://localhost:5001 (``python -m examples.portal.app`` with the
``RP_*`` variables described in :mod:`examples.rp_common`).
"""

from __future__ import annotations

from flask import Flask

from examples.rp_common import RpConfig, create_rp_app, serve


def make_config() -> RpConfig:
    return RpConfig.from_env(
        "portal",
        "省政务服务门户",
        default_port=5001,
        default_scope="openid profile email phone qr_login",
    )


def create_app(config: RpConfig | None = None) -> Flask:
    return create_rp_app(config or make_config(), color="#b8202b")


def main() -> None:
    config = make_config()
    serve(create_app(config), config)


if __name__ == "__main__":
    main()
