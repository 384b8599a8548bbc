"""``python -m incidents.probe [healthz|readyz]``: a container's health check.

Asks the server in the same container (``127.0.0.1:$IM_PORT``) and exits 0 when the
endpoint answers 200, 1 otherwise with one line on stderr. It imports only the
standard library, since it starts every few seconds: ``healthz`` (the image's
HEALTHCHECK) says the process serves HTTP, ``readyz`` that every dependency answers.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

ENDPOINTS = ("healthz", "readyz")


def probe(endpoint: str, port: int, timeout: float = 2.5) -> str | None:
    """None when ``/<endpoint>`` answers 200, else why not."""
    url = f"http://127.0.0.1:{port}/{endpoint}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    return None if status == 200 else f"{url} answered HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    endpoint = args[0] if args else "healthz"
    if endpoint not in ENDPOINTS or len(args) > 1:
        print(f"usage: python -m incidents.probe [{'|'.join(ENDPOINTS)}]", file=sys.stderr)
        return 2
    raw_port = os.environ.get("IM_PORT", "8080")
    if not raw_port.isdigit():
        print(f"probe: IM_PORT: expected a port number, got {raw_port!r}", file=sys.stderr)
        return 2
    problem = probe(endpoint, int(raw_port))
    if problem is not None:
        print(f"probe: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
