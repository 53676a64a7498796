"""Serve the studio's JSON API alone: ``python -m scripts.api [--host ADDR] [--port N] [--db PATH]``.

``make run`` (``scripts.studio``) starts it beside the app; this is for a machine that runs only workers and
pipelines. The port may also come from ``VP_API_PORT`` (default 8502); the bearer token every request needs
is in ``$VP_HOME/api_token`` (made on first start, mode 0600). See :mod:`app.api.server`.
"""

from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    from app.api.server import DEFAULT_PORT

    ap = argparse.ArgumentParser(prog="python -m scripts.api", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("VP_API_PORT") or DEFAULT_PORT))
    ap.add_argument("--db", default=None, help="studio database (default: $VP_HOME/studio.db)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log details to the console")
    args = ap.parse_args(argv)
    from app.api.auth import token_path
    from app.api.server import create_app, serve
    from core.errors import StudioError
    from core.logging_config import setup_logging

    setup_logging(args.verbose)
    if args.host not in LOOPBACK:
        print(f"warning: serving the API on {args.host}: its token travels unencrypted over the network",
              file=sys.stderr)
    try:
        app = create_app(args.db)  # the token first: a bad token file stops here, before anything listens
        print(f"api: http://{args.host}:{args.port}  (token in {token_path()})", file=sys.stderr)
        serve(app, args.host, args.port)
    except StudioError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2 if exc.user_error else 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
