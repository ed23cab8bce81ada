"""The browser pages' static files: shared styles and scripts, the local dashboard's pages
(``static/local``) and the job service's (``static/service``). Files only, no Python logic:
``preftune dashboard`` and ``preftune serve`` both serve ``STATIC``."""

from pathlib import Path

STATIC = Path(__file__).parent / "static"
