"""Screenshots of the built book as a reader sees it: `make screenshots`.

Every page of ``_build/html`` is rendered by headless Chromium at a desktop and a
narrow width; the PNGs go to ``_build/screenshots/<width>/<page>.png`` (not kept
in the repository: look at them, fix what you see, rebuild). Chromium comes from
Debian's packages (``apt-get install chromium``).

    python tools/screenshots.py [--html _build/html] [--widths 1400,800] [--height 2400] [PAGE ...]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("screenshots: no Chromium found; install it with `apt-get install chromium`")


def shoot(page: Path, out: Path, width: int, height: int) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={width},{height}", f"--screenshot={out}", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default=str(REPO / "_build" / "html"))
    parser.add_argument("--out", default=str(REPO / "_build" / "screenshots"))
    parser.add_argument("--widths", type=lambda s: [int(w) for w in s.split(",")], default=[1400, 800],
                        help="comma-separated page widths in pixels (default 1400,800)")
    parser.add_argument("--height", type=int, default=2400, help="pixels of the page captured from the top")
    parser.add_argument("pages", nargs="*", help="page paths relative to the html folder (default: all)")
    args = parser.parse_args(argv)
    html = Path(args.html)
    if not html.is_dir():
        sys.exit(f"screenshots: {html} not found; build the book first (make book)")
    pages = [html / p for p in args.pages] or sorted(
        p for p in html.rglob("*.html") if not {"_static", "_sources", "_modules"} & set(p.parts)
        and p.name not in ("genindex.html", "search.html", "py-modindex.html"))
    missing = [str(p.relative_to(html)) for p in pages if not p.is_file()]
    if missing:
        sys.exit(f"screenshots: no such page in {html}: {', '.join(missing)} (give paths like "
                 "book/experiments/06_verdict.html)")
    for page in pages:
        for width in args.widths:
            out = Path(args.out) / str(width) / page.relative_to(html).with_suffix(".png")
            shoot(page, out, width, args.height)
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
