"""``python -m idp.cli``: the ``yitong`` command without the console script."""

from idp.cli import main

main()
