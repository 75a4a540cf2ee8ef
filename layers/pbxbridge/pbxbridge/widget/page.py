"""The widget's static page, served by the stack with a strict Content-Security-Policy.

No inline script or style, nothing from a third party: scripts, styles and XHR only from this
origin, the WebSocket only to the stack's own, audio only from the recordings bucket, and framing
only by the CRM's origins (`WidgetFrameAncestors`).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from pbxbridge.widget.settings import PageSettings, page_settings

ASSETS = {
    "widget.js": "text/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}


def content_security_policy(settings: PageSettings) -> str:
    media = settings.media_origin or "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' {settings.socket_url}",
            f"media-src {media}",
            f"frame-ancestors {settings.frame_ancestors}",
            "base-uri 'none'",
            "form-action 'none'",
        )
    )


def _headers(content_type: str, settings: PageSettings) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def serve_page(event: dict[str, Any], root: Path, settings: PageSettings | None = None) -> dict[str, Any]:
    """`GET /widget` -> the page (the stack's WebSocket URL in a meta tag); `GET /widget/{asset}`."""
    settings = settings or page_settings()
    asset = ((event.get("pathParameters") or {}).get("asset") or "").strip()
    if not asset:
        page = (root / "index.html").read_text(encoding="utf-8")
        body = page.replace("{{SOCKET_URL}}", html.escape(settings.socket_url, quote=True))
        return {"statusCode": 200, "headers": _headers("text/html; charset=utf-8", settings), "body": body}
    if asset not in ASSETS:  # an allow-list: no path ever reaches the file system from a request
        return {"statusCode": 404, "headers": {"Content-Type": "text/plain"}, "body": "not found"}
    return {
        "statusCode": 200,
        "headers": _headers(ASSETS[asset], settings),
        "body": (root / asset).read_text(encoding="utf-8"),
    }
