"""The QR codes Yitong draws (login panel, authenticator enrolment) show exactly the code's modules."""

from __future__ import annotations

import re

import qrcode

from idp.interaction.qr_svg import qr_svg


def _drawn(svg: str, side: int) -> list[list[bool]]:
    grid = [[False] * side for _ in range(side)]
    for x, y, width in re.findall(r"M(\d+),(\d+)h(\d+)v1h-\3z", svg):
        for i in range(int(width)):
            assert not grid[int(y)][int(x) + i]  # runs never overlap
            grid[int(y)][int(x) + i] = True
    return grid


def test_the_svg_draws_every_dark_module_and_nothing_else() -> None:
    text = "https://id.example.gov.cn/qr/ABCD-1234-efgh"
    for border in (2, 4):
        code = qrcode.QRCode(border=border)
        code.add_data(text)
        code.make(fit=True)
        matrix = code.get_matrix()
        svg = qr_svg(text, border=border)
        side = len(matrix)
        assert f'viewBox="0 0 {side} {side}"' in svg
        assert _drawn(svg, side) == matrix
