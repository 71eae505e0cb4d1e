"""The web console (layer 5): server-rendered Jinja2 pages with htmx and uPlot (vendored under `static/`, nothing
loaded from elsewhere), served by the API's app under /console and scoped to the caller's project through the
API's own route functions.

`session` (cookie sign-in, one-time links, CSRF), `pages` (layout, sign-in, project), `pipelines`, `artifacts`,
`registry` (the other pages), `mount` (mount_console, login_link), `format` (number filters), `graphs`
(server-side DAG layout). Other pages extend `templates/base.html` (blocks: title, body, scripts).
"""

from embodia.platform.api.console.mount import login_link, mount_console
from embodia.platform.api.console.pages import render

__all__ = ["login_link", "mount_console", "render"]
