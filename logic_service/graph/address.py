"""The graph tier's address as a pipeline file or GRAPH_SERVICE_URL gives it, checked.

Standard library only: the pipeline file (and so this check) is also read by the compile
command's build environments, which have no HTTP client installed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from logic_service.errors import ConfigError


def validate_url(url: str, where: str = "GRAPH_SERVICE_URL") -> str:
    """`http(s)://host[:port]`; a ConfigError naming the fix otherwise (`graph:8501`)."""
    try:
        parsed = urlsplit(url)
        host = parsed.hostname
    except ValueError:
        parsed, host = None, None
    if parsed is None or parsed.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{where}={url!r} is not an http(s) URL: write it with its scheme, "
            f"e.g. http://{url.rsplit('://', maxsplit=1)[-1].rstrip('/') or 'graph:8501'}"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ConfigError(f"{where}={url!r}: give only scheme, host and port (no path)")
    return url.rstrip("/")
