"""Write the API's OpenAPI document (the committed snapshot that tests compare against).

Usage:
    python scripts/ops/export_openapi.py [OUT]     # default: docs/openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.app.factory import create_app
from service.core.config import Settings


def openapi_document() -> dict:
    # The schema does not depend on models or data: no lifespan, nothing loads.
    return create_app(Settings()).openapi()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("docs/openapi.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
