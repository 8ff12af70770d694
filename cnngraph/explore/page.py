"""render: the explorer's data (format 1, see PLAN23.md) -> one self-contained HTML page.

The page's script, style and data are inlined into assets/page.html: it opens from a
file:// URL with no network.  The data travels as JSON in a ``<script
type="application/json">`` element, escaped so that no string in it can close that
element; non-finite numbers (a diverged run's ranges) become the strings "NaN",
"Infinity" and "-Infinity", which JSON cannot otherwise carry.  Each position's
step-by-step computations ("explain", "explain_delta": most of the data, and very
repetitive) travel gzipped, as base64 in the position's "packed" field; the page
unpacks them with the browser's DecompressionStream before it starts.
"""
from __future__ import annotations

import base64
import gzip
import html
import json
import math
import re
from pathlib import Path

from ..core.errors import CnnError

ASSETS = Path(__file__).resolve().parent / "assets"
FORMAT = 1
#: the page's script, in order: one function scope, so the parts share their names
SCRIPTS = ("page.js", "panels.js")
#: the fields of a position that travel gzipped (`pack`)
PACKED = ("explain", "explain_delta")
#: characters that could end the script element (json.dumps already escapes non-ASCII)
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def render(data: dict) -> str:
    """The whole page for ``data`` (the dict explore.build.collect makes)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CnnError(f"the explorer's data has format {found!r}; this page reads format "
                       f"{FORMAT}", where="page data")
    template = (ASSETS / "page.html").read_text(encoding="utf-8")
    parts = {"STYLE": (ASSETS / "page.css").read_text(encoding="utf-8"),
             "SCRIPT": "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in SCRIPTS),
             "DATA": embed_json(pack(data)),
             "TITLE": html.escape(str(data.get("title", "cnngraph explorer")))}
    # one pass, so that a marker inside an inserted part is left as it is
    return re.sub(r"/\*(STYLE|SCRIPT|DATA|TITLE)\*/", lambda m: parts[m.group(1)], template)


def pack(data: dict) -> dict:
    """``data`` with each position's `PACKED` fields replaced by "packed": their JSON
    object, gzipped, in base64 (the caller's dict is left as it is)."""
    positions = []
    for position in data.get("positions", []):
        inner = {k: position[k] for k in PACKED if k in position}
        text = json.dumps(_finite(inner), separators=(",", ":"), allow_nan=False)
        packed = base64.b64encode(gzip.compress(text.encode(), 9, mtime=0)).decode("ascii")
        positions.append({**{k: v for k, v in position.items() if k not in PACKED},
                          "packed": packed})
    return {**data, "positions": positions}


def unpack(position: dict) -> dict:
    """The `PACKED` fields of one embedded position (what the page reads)."""
    return json.loads(gzip.decompress(base64.b64decode(position["packed"])))


def embed_json(data) -> str:
    """JSON text for ``data`` that is safe inside a script element."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    for raw, escaped in _ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def _finite(value):
    """``value`` with NumPy scalars and arrays as Python ones and non-finite floats as
    their names."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist"):  # a NumPy array or scalar
        return _finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value
