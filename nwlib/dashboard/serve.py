"""``make dashboard`` = ``python -m nwlib.dashboard.serve``: Voila serving ``notebooks/dashboard.ipynb``, offline and frugal.

What it sets on Voila, and why (every launch of the dashboard goes through here):

* **loopback only** (``--ip 127.0.0.1``): the page edits the lake and runs syncs; it is not for the network.
* **template ``nw``** (``jupyter/voila/templates/nw`` beside this file): Voila's ``lab`` template without the
  two Font Awesome stylesheets it links from a CDN.  The page then loads nothing from outside this server, so
  it works with no internet.
* **JupyterLab extensions: the widget manager only.**  Voila loads every installed JupyterLab extension into
  the page; jupysql's fails there ("Shared module @jupyterlab/completer doesn't exist") and plotly's is 4.7 MB
  of JavaScript the dashboard does not use.
* **kernels culled**: a page's kernel (~100–300 MB) is shut down once no page is connected to it and it has
  been idle ``--cull-idle-seconds`` (default 60), checked every ``--cull-interval-seconds`` (default 10).  An open
  page is never culled (``cull_connected`` off) and neither is a kernel running a sync (``cull_busy`` off).
* **the ``_xsrf`` cookie set on the page**, so Voila's own shutdown-on-close (a beacon the page sends when its
  tab closes) is accepted instead of refused with 403 (Voila issue 1458): a closed tab's kernel stops at once;
  the culling above is for the pages that vanish without a word (a crashed browser, a sleeping laptop).

Arguments not listed here go to Voila unchanged (``python -m nwlib.dashboard.serve --help-all`` lists Voila's).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

JUPYTER_DIR = Path(__file__).resolve().parent / "jupyter"     # holds voila/templates/nw
TEMPLATE = "nw"
WIDGET_EXTENSIONS = ["@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8"]
CULL_IDLE_SECONDS, CULL_INTERVAL_SECONDS = 60, 10


def set_xsrf_cookie(handler, notebook=None, cwd=None):
    """Voila prelaunch hook: reading the token makes tornado set the ``_xsrf`` cookie on the page's response."""
    handler.xsrf_token  # noqa: B018 - read for its side effect
    return None


def voila_config(ip: str = "127.0.0.1", cull_idle: int = CULL_IDLE_SECONDS, cull_interval: int = CULL_INTERVAL_SECONDS):
    """The traitlets config above, for ``Voila.launch_instance(config=…)``."""
    from traitlets.config import Config

    c = Config()
    c.Voila.ip = ip
    c.Voila.open_browser = False
    c.VoilaConfiguration.template = TEMPLATE
    c.VoilaConfiguration.extension_allowlist = WIDGET_EXTENSIONS
    c.VoilaConfiguration.prelaunch_hook = set_xsrf_cookie
    c.MappingKernelManager.cull_idle_timeout = cull_idle
    c.MappingKernelManager.cull_interval = cull_interval
    c.MappingKernelManager.cull_connected = False
    c.MappingKernelManager.cull_busy = False
    return c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nwlib.dashboard.serve",
                                description="Serve the dashboard with Voila: on this machine only, nothing fetched from outside, "
                                            "a page's kernel shut down when the page closes.",
                                epilog="example: python -m nwlib.dashboard.serve --port 8866")
    p.add_argument("notebook", nargs="?", default="notebooks/dashboard.ipynb", help="the dashboard notebook (default: %(default)s)")
    p.add_argument("--port", type=int, default=8866, help="port on 127.0.0.1 (default: %(default)s)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--cull-idle-seconds", type=int, default=CULL_IDLE_SECONDS,
                   help="shut a kernel down this long after its page is gone (default: %(default)s)")
    p.add_argument("--cull-interval-seconds", type=int, default=CULL_INTERVAL_SECONDS,
                   help="how often to look for such kernels (default: %(default)s)")
    args, voila_args = p.parse_known_args(argv)
    if not Path(args.notebook).is_file():
        print(f"nw dashboard: error: notebook not found: {args.notebook} (run from the project folder, or pass its path)", file=sys.stderr)
        return 2
    # Voila finds templates under the Jupyter data path; ours goes first.
    os.environ["JUPYTER_PATH"] = os.pathsep.join(d for d in (str(JUPYTER_DIR), os.environ.get("JUPYTER_PATH", "")) if d)
    os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")   # jupysql's telemetry, should a kernel import it: no network calls
    from voila.app import Voila

    Voila.launch_instance(argv=[args.notebook, f"--port={args.port}", *voila_args],
                          config=voila_config(args.ip, args.cull_idle_seconds, args.cull_interval_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
