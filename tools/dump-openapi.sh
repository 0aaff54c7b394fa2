#!/usr/bin/env bash
# Dumps the OpenAPI document of the pinned Prefect server, unchanged, into
# openapi/prefect-3.9.1.json. Needs network access to PyPI the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PREFECT_VERSION=3.9.1
if ! "$VENV/bin/python" -c "import prefect, sys; sys.exit(prefect.__version__ != '$PREFECT_VERSION')" 2>/dev/null; then
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q "prefect==$PREFECT_VERSION"
fi
# No PREFECT_* variables may leak into the document (defaults appear in it).
env -i PATH="$PATH" HOME=/nonexistent "$VENV/bin/python" - > openapi/prefect-$PREFECT_VERSION.json <<'PY'
import json
from prefect.server.api.server import create_app
print(json.dumps(create_app().openapi(), indent=2))
PY
echo "wrote openapi/prefect-$PREFECT_VERSION.json"
