"""The source view's page picture against ``streamlit-pdf-viewer``, side by side in chromium.

Issue 19 asked to choose between a PNG rendered by PDFium with the fragment marked by Pillow (what
``app_pages/source.py`` shows) and ``streamlit-pdf-viewer``'s PDF.js viewer with an annotation, by
what loads fastest. Two minimal Streamlit apps show page N of the same generated 100-page contract
with one marked box and a «Следующая →» button; chromium opens each, then clicks through pages.
Per opening and per click: the time until the new page is on screen (the PNG decoded; the viewer's
``canvas_page_N`` drawn) and the bytes the browser received (HTTP bodies and websocket frames).

The viewer is installed for this run only, into a temporary folder, from PyPI:

    .venv/bin/python bench/pdf_viewer.py [--pages 100] [--clicks 15] [--version 0.0.30]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.source_view import make_pdf  # noqa: E402
from tests.e2e.harness import browser  # noqa: E402

BOX = (0.1, 0.3, 0.9, 0.36)  # the marked fragment, as fractions of the page

PNG_APP = """
import sys
sys.path.insert(0, {repo!r})
import streamlit as st
from rag.library.render import pdf_page, png

data = open({pdf!r}, "rb").read()
st.session_state.setdefault("page", 1)
if st.button("Следующая →"):
    st.session_state.page += 1
page = st.session_state.page

@st.cache_data(max_entries=48)
def picture(p: int) -> bytes:
    return png(pdf_page(data, p, [{box!r}], ocr=False))

st.image(picture(page), caption=f"Страница {{page}}", width="stretch", output_format="PNG")
"""

VIEWER_APP = """
import sys
sys.path.insert(0, {lib!r})
import streamlit as st
from streamlit_pdf_viewer import pdf_viewer

data = open({pdf!r}, "rb").read()
st.session_state.setdefault("page", 1)
if st.button("Следующая →"):
    st.session_state.page += 1
page = st.session_state.page
x0, y0, x1, y1 = {box!r}
w, h = 595.28, 841.89  # A4 in points
pdf_viewer(
    data,
    pages_to_render=[page],
    annotations=[{{"page": page, "x": x0 * w, "y": y0 * h, "width": (x1 - x0) * w,
                  "height": (y1 - y0) * h, "color": "rgba(255, 220, 0, 0.45)"}}],
    key=f"viewer-{{page}}",  # a new page needs a new component: it renders once, when mounted
)
"""

PNG_READY = """n => {
    const shown = [...document.querySelectorAll('[data-testid="stImage"]')]
        .filter(e => e.innerText.includes('Страница ' + n));
    const img = shown.length ? shown[0].querySelector('img') : null;
    return img !== null && img.complete && img.naturalWidth > 0;
}"""
# A page canvas drawn since the click (the old ones are tagged before it), with ink on it.
CANVAS_READY = """() => [...document.querySelectorAll('canvas[id^="canvas_page_"]')].some(c => {
    if (c.dataset.old || !c.width) return false;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4 * 97) if (d[i] < 128) return true;
    return false;
})"""
TAG_OLD = "document.querySelectorAll('canvas').forEach(c => c.dataset.old = '1')"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(script: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(script),
            "--server.headless=true",
            f"--server.port={port}",
            "--browser.gatherUsageStats=false",
        ],
        cwd=script.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{script.name} did not start")


def _measure(url: str, kind: str, clicks: int) -> dict[str, Any]:
    received = [0]
    with browser() as b:
        page = b.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)
        page.on(
            "requestfinished", lambda r: received.__setitem__(0, received[0] + r.sizes()["responseBodySize"])
        )
        page.on(
            "websocket",
            lambda ws: ws.on(
                "framereceived", lambda payload: received.__setitem__(0, received[0] + len(payload))
            ),
        )

        def ready(n: int) -> None:
            if kind == "png":
                page.wait_for_function(PNG_READY, arg=n)
                return
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline:  # the component's frame comes after the script run
                for frame in [f for f in page.frames if "streamlit_pdf_viewer" in f.url]:
                    try:
                        if frame.evaluate(CANVAS_READY):
                            return
                    except Exception:  # a frame being replaced
                        continue
                page.wait_for_timeout(10)
            raise TimeoutError(f"page {n} of the viewer never drawn")

        start = time.perf_counter()
        page.goto(url)
        ready(1)
        first = {"ms": round((time.perf_counter() - start) * 1000), "kb": round(received[0] / 1024)}
        times, sizes = [], []
        for n in range(2, clicks + 2):
            received[0] = 0
            for frame in page.frames:
                frame.evaluate(TAG_OLD)
            start = time.perf_counter()
            page.get_by_role("button", name="Следующая →").click()
            ready(n)
            times.append((time.perf_counter() - start) * 1000)
            sizes.append(received[0] / 1024)
    times.sort()
    return {
        "shown": kind,
        "first_open_ms": first["ms"],
        "first_open_kb": first["kb"],
        "click_p50_ms": round(statistics.median(times)),
        "click_p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))]),
        "click_kb": round(statistics.median(sizes)),
    }


def main() -> None:
    """Serve both apps, measure each in chromium, print a JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--clicks", type=int, default=15)
    ap.add_argument("--version", default="0.0.30")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pdf-viewer-") as tmp:
        folder = Path(tmp)
        lib = folder / "lib"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(lib),
                f"streamlit-pdf-viewer=={args.version}",
            ],
            check=True,
        )
        pdf = folder / "contract.pdf"
        pdf.write_bytes(make_pdf(args.pages))
        print(json.dumps({"pdf_kb": round(pdf.stat().st_size / 1024), "pages": args.pages}), flush=True)
        for kind, template in (("png", PNG_APP), ("pdf-viewer", VIEWER_APP)):
            script = folder / f"{kind.replace('-', '_')}_app.py"
            script.write_text(
                textwrap.dedent(template.format(repo=str(REPO), lib=str(lib), pdf=str(pdf), box=BOX)),
                encoding="utf-8",
            )
            proc, url = _serve(script)
            try:
                print(json.dumps(_measure(url, kind, args.clicks)), flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
