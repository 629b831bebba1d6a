"""Ticket-bridge fixtures: a legacy system (a real HTTP server on loopback that receives
tickets on its callback and logout tokens on its back-channel URL), its registration, and a
signed-request helper built on the reference client (clients/yitong_bridge.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from clients.yitong_bridge import BridgeClient
from idp.bridge.registry import BridgeSystemSpec, create_system
from tests.services.recorder import Recorder, running


class LegacySystem(Recorder):
    """A department system: records what reaches its callback and its logout URL."""

    def __init__(self) -> None:
        super().__init__(body=b"legacy system")

    @property
    def callbacks(self) -> list[dict[str, str]]:
        return [r.query for r in self.gets()]

    @property
    def logout_tokens(self) -> list[str]:
        return self.posted("logout_token")

    def url(self, path: str = "/callback") -> str:
        return super().url(path)


@pytest.fixture
def legacy() -> Iterator[LegacySystem]:
    with running(LegacySystem()) as system:
        yield system


@dataclass(frozen=True)
class Registered:
    system_id: str
    secret: str
    callback: str

    def client(self, server: str = "http://localhost", **kwargs: Any) -> BridgeClient:
        return BridgeClient(server, self.system_id, self.secret, **kwargs)


def register_system(
    app: Flask,
    callback: str,
    *,
    attributes: list[str] | None = None,
    backchannel: str | None = None,
    frontchannel: str | None = None,
    name: str = "社保旧系统",
) -> Registered:
    services = app.extensions["yitong"]
    with services.db.transaction() as session:
        row, secret = create_system(
            session,
            BridgeSystemSpec(
                name=name,
                callback=callback,
                attributes=attributes if attributes is not None else ["name", "email"],
                backchannel_logout_uri=backchannel,
                frontchannel_logout_uri=frontchannel,
            ),
            actor="test",
            kek=services.kek,
        )
        return Registered(row.client_id, secret, callback)
