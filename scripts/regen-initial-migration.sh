#!/usr/bin/env bash
# Until the first release there is one migration, regenerated from idp/storage/models.py.
# After the first release: add new revisions with `alembic revision --autogenerate` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f idp/storage/migrations/versions/0001_initial.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from idp.storage.migrate import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/m.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001_initial")
PY
f=$(ls idp/storage/migrations/versions/0001_initial*.py)
[ "$f" = idp/storage/migrations/versions/0001_initial.py ] || mv "$f" idp/storage/migrations/versions/0001_initial.py
rm -rf "$tmp"
echo "regenerated idp/storage/migrations/versions/0001_initial.py"
