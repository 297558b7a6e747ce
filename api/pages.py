"""The API's own HTML pages (the widget demo, the API docs) and the headers that guard them.

They had no Content-Security-Policy and could be framed by any site. Each now gets a policy
that names exactly what it loads (its inline scripts by hash), and only this origin may frame
it. Not for the widget fragment: publishers embed that one (api.app.HTML_HEADERS).
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # frame-ancestors is the rule; X-Frame-Options for browsers that predate it.
    "X-Frame-Options": "SAMEORIGIN",
}
# What every page shares: nothing unless named, no <base> or form posts elsewhere, no framing.
BASE_POLICY = "default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
CANONICAL_LINK = re.compile(r'<link rel="canonical" href="([^"]+)">')

# /demo: widget.js and the API on this origin, its own inline script and <style>, thumbnails
# from any news site. style-src keeps 'unsafe-inline' because the widget falls back to a
# <style> element in browsers without constructable stylesheets.
DEMO_POLICY = ("script-src 'self' {inline}; connect-src 'self'; img-src http: https: data:; "
               "style-src 'unsafe-inline'")

# FastAPI's docs load Swagger UI and ReDoc from a CDN (none is served from here). Named down to
# the package: the CDN serves every npm package, so the bare host would allow any script.
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"
REDOC_JS = "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
FAVICON = "https://fastapi.tiangolo.com/img/favicon.png"
DOCS_POLICY = (f"script-src {SWAGGER_UI} {{inline}}; style-src {SWAGGER_UI}; "
               f"img-src 'self' data: {FAVICON}; connect-src 'self'")
# ReDoc styles itself with <style> elements and Google Fonts, searches in a blob: worker, and
# shows its maker's logo.
REDOC_POLICY = (f"script-src {REDOC_JS}; style-src 'unsafe-inline' https://fonts.googleapis.com; "
                "font-src https://fonts.gstatic.com; "
                f"img-src 'self' data: {FAVICON} https://cdn.redoc.ly/redoc/; "
                "connect-src 'self'; worker-src blob:")


def own_page(html: str, policy: str) -> HTMLResponse:
    """`html` under `policy`, where {inline} stands for the page's own inline scripts: each
    allowed by its SHA-256 (CSP 3), so a script injected into the page does not run."""
    inline = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in INLINE_SCRIPT.findall(html))
    csp = f"{BASE_POLICY}; {policy.format(inline=inline)}"
    return HTMLResponse(html, headers={**PAGE_HEADERS, "Content-Security-Policy": csp})


def docs_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's Swagger UI page, from the URLs its policy names."""
    html = get_swagger_ui_html(
        openapi_url=openapi_url, title=f"{title} - Swagger UI",
        swagger_js_url=SWAGGER_UI + "swagger-ui-bundle.js",
        swagger_css_url=SWAGGER_UI + "swagger-ui.css", swagger_favicon_url=FAVICON)
    return own_page(html.body.decode(), DOCS_POLICY)


def redoc_page(openapi_url: str, title: str) -> HTMLResponse:
    """FastAPI's ReDoc page, from the URLs its policy names."""
    html = get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc",
                          redoc_js_url=REDOC_JS, redoc_favicon_url=FAVICON)
    return own_page(html.body.decode(), REDOC_POLICY)


def declared_address(page: str) -> str:
    """The canonical address one of our own pages declares (the demo's made-up article URL,
    which the widget asks the block for). A page without one is a bug of ours: KeyError."""
    found = CANONICAL_LINK.search(page)
    if found is None:
        raise KeyError("the page declares no canonical link")
    return found.group(1)
