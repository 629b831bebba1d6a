"""QR codes drawn as SVG, for the QR login panel and the authenticator-app enrolment page.

The path is written here from the code's module matrix: ``qrcode``'s own SVG image factory
pulls in lxml (about 6 MB per worker), and ``qrcode`` itself is imported only when a code is
first drawn (issue 12 item 5: a worker holds what it needs, not what it might).
"""

from __future__ import annotations

from itertools import groupby

#: Side of one module: 0.8 mm, as ``qrcode``'s SVG factory drew it with ``box_size=8``.
MODULE_MM = 0.8


def qr_svg(text: str, *, border: int = 4) -> str:
    """An ``<svg>`` element showing ``text`` as a QR code with a quiet zone of ``border`` modules."""
    import qrcode

    code = qrcode.QRCode(border=border)
    code.add_data(text)
    code.make(fit=True)
    matrix = code.get_matrix()  # the quiet zone included
    side = len(matrix)
    runs: list[str] = []  # one rectangle per run of dark modules in a row
    for y, row in enumerate(matrix):
        x = 0
        for dark, run in groupby(row):
            width = len(list(run))
            if dark:
                runs.append(f"M{x},{y}h{width}v1h-{width}z")
            x += width
    path = "".join(runs)
    size = f"{side * MODULE_MM:g}mm"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{size}" height="{size}" '
        f'viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><path d="{path}"/></svg>'
    )
