"""Check the built site the way a reader sees it: every page loaded in headless Chromium, driven by Playwright.

A page fails on any request that is not to the local server, any console or page error, any response >= 400,
any image that did not load, any MathJax error (undefined macros included: the site's MathJax config drops
`noundefined`) or formula left untypeset; after all pages, every internal link must reach a file and its anchor.
"""
import functools
import http.server
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's Chromium; Playwright adds --headless and drives it with no download
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

_inspect_js = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  const broken = (await Promise.all(imgs.map(i => i.decode().then(() => null, () => i.getAttribute('src')))))
    .filter(s => s !== null);
  return {
    broken_images: broken,
    math_errors: [...document.querySelectorAll('mjx-merror')]
      .map(e => e.getAttribute('data-mjx-error') || e.textContent),
    untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'))
      .map(e => e.textContent.trim().slice(0, 60)),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
      .concat([...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name'))),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  };
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    "Serve `site` on a free port of 127.0.0.1 from a daemon thread; the server and its base URL"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages(site: Path) -> list[str]:
    "The site's HTML pages, relative to `site`, index first"
    found = [p.relative_to(site).as_posix() for p in site.rglob("*.html") if not p.relative_to(site).parts[0][0] in "_."]
    return sorted(found, key=lambda p: (p != "index.html", p))


def watch(context, base: str, problems: list, current: list):
    "Record in `problems` each non-local request (blocked), console error, page error and failed response"
    def route(r):
        url = r.request.url
        if url.startswith(base) or url.startswith(("data:", "blob:", "about:")): return r.continue_()
        problems.append(f"{current[0]}: request to a non-local address: {url}")
        r.abort()
    context.route("**/*", route)

    def on_page(page):
        page.on("console", lambda m: m.type == "error" and problems.append(f"{current[0]}: console error: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"{current[0]}: page error: {e}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(
            f"{current[0]}: HTTP {r.status} for {r.url.removeprefix(base)}"))
    context.on("page", on_page)


def inspect_page(page, url: str, name: str, problems: list) -> dict:
    "Load `url` and record what a reader would see broken; the page's ids and links"
    page.goto(url, wait_until="load")
    found = page.evaluate(_inspect_js)
    problems += [f"{name}: image did not load: {s}" for s in found["broken_images"]]
    problems += [f"{name}: MathJax error: {e}" for e in found["math_errors"]]
    problems += [f"{name}: formula not typeset: {t}" for t in found["untypeset"]]
    return found


def broken_links(site: Path, base: str, found: dict) -> list[str]:
    "Internal links (to this site) whose file or anchor does not exist"
    problems = []
    for name, info in found.items():
        for link in info["links"]:
            if not link.startswith(base): continue
            url, frag = urldefrag(link)
            path = unquote(urlsplit(url).path).lstrip("/") or "index.html"
            if path.endswith("/"): path += "index.html"
            if not (site / path).is_file(): problems.append(f"{name}: broken link: {link.removeprefix(base)}")
            elif frag and path in found and unquote(frag) not in found[path]["ids"]:
                problems.append(f"{name}: broken anchor: {link.removeprefix(base)}")
    return problems


def screenshot(page, base: str, name: str, path: Path):
    "Screenshot `name`: the top of the page, or the first notebook figure when there is one"
    page.goto(base + name, wait_until="load")
    page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
    figure = page.locator(".cell_output img").first
    if figure.count(): figure.scroll_into_view_if_needed()
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


def check_site(site: Path,  # the built HTML site
               shots: dict | None = None,  # screenshot file -> page to take it of
               ) -> list[str]:
    "Every problem a reader would meet on the site, one line each (empty: the site is fine)"
    if not (site / "index.html").is_file(): raise FileNotFoundError(f"{site / 'index.html'} missing: build the site")
    server, base = serve(site)
    problems, current, found = [], ["-"], {}
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(  # a fresh, empty profile each run
                profile, executable_path=CHROMIUM, args=FLAGS, viewport={"width": 1280, "height": 900},
                service_workers="block")
            watch(context, base, problems, current)
            page = context.new_page()
            for name in pages(site):
                current[0] = name
                found[name] = inspect_page(page, base + name, name, problems)
            for path, name in (shots or {}).items():
                current[0] = name
                screenshot(page, base, name, Path(path))
            context.close()
    finally:
        server.shutdown()
    return problems + broken_links(site, base, found)


def main(site: Path, shots: dict) -> int:
    "The `check` step of docs/build.py: print each problem; exit status 1 if there is any"
    start = time.time()
    problems = check_site(site, shots)
    for p in problems: print(f"PROBLEM {p}")
    print(f"browser check: {len(pages(site))} pages, {len(problems)} problems, {time.time() - start:.1f} s")
    return 1 if problems else 0
