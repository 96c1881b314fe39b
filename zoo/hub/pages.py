"""The pages a person browses on ``zoo serve``: the index (``/``) and each repo's page
(``/ORG/NAME``, ``/datasets/ORG/NAME``, at a revision: ``.../tree/REV``), server-rendered with
Jinja2 (starlette's ``Jinja2Templates``) from ``zoo/hub/templates``; no front-end framework.

The index works without JavaScript (search, filters and sort are a GET form and links); the one
script (``static/index.js``) only filters the rows already on the page as you type.

A README is someone else's text: it may hold HTML and script meant to run in the reader's browser.
It is rendered by markdown-it-py's ``js-default`` preset (raw HTML off: shown as text, never
passed through as the ``default`` preset does), then sanitised by nh3 (an allow-list of tags,
attributes and URL schemes), and every page carries a Content-Security-Policy that allows no inline
script, no script from elsewhere, and no request to another origin, so a hole in either still runs
nothing and beacons nowhere. Relative links and images in a README point at the repo's own files
at the page's commit.
"""

from __future__ import annotations

import difflib
import posixpath
import threading
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from zoo.cards.card import REPO_ID_RE
from zoo.compare.measurements import latest_measurements
from zoo.hub import read
from zoo.hub.cards import split_card
from zoo.hub.catalog import Summary, catalog, heads_of, summarize
from zoo.hub.served import Repo, ServedRepos

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
#: where the pages' stylesheet and script are served (an org cannot be named "-": no repo hides them)
STATIC_PATH = "/-/static"

#: every HTML page's policy: its own stylesheet and script only, images from itself (and data:),
#: no plugin, no frame, no form posting elsewhere, no request to any other origin
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}

#: the index's sort keys: name, published top-1, parameters, total file size, last commit
SORTS = ("name", "top1", "params", "size", "updated")
#: how many recent commits a repo page lists
RECENT_COMMITS = 10


def _human_size(n: int | None) -> str:
    if n is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _count(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def _when(t: float | None) -> str:
    if not t:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(human_size=_human_size, count=_count, when=_when,
                             q=lambda s: quote(str(s), safe=""), path=lambda s: quote(str(s), safe="/"))
templates.env.globals.update(static=STATIC_PATH)


def page(request: Request, name: str, context: dict, status: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status, headers=PAGE_HEADERS)


def error_page(request: Request, status: int, title: str, message: str, suggestions: list[Summary] = ()) -> Response:
    return page(request, "error.html", {"title": title, "message": message, "suggestions": suggestions}, status)


# ---- README rendering -------------------------------------------------------------------------

#: README sha256 -> its sanitised HTML, links under :data:`LINK_BASE` (a blob never changes; the
#: oldest half goes when full)
_RENDERED: dict[str, str] = {}
_RENDERED_MAX = 1024
_RENDERING: dict[str, threading.Lock] = {}
_RENDERING_LOCK = threading.Lock()
#: what relative links are rendered under, then replaced with the page's ``/ORG/NAME/resolve/COMMIT/``
LINK_BASE = "/-/zoo-link-base/"
#: the largest README rendered: markdown-it's link parsing costs ~40 us per '[' (a README of
#: brackets would hold a server thread for seconds per 100 KB); a larger one is a download
README_RENDER_MAX = 128 * 1024
#: markdown-it's nesting limit (commonmark's): deeper brackets and emphasis stay text
MAX_NESTING = 20


def render_markdown(text: str, link_base: str) -> Markup:
    """``text`` as safe HTML: markdown-it-py ``js-default`` (raw HTML shown as text), then nh3's
    allow-list; a relative link or image is taken to the repo's file under ``link_base``
    (``/ORG/NAME/resolve/COMMIT/``), one that climbs out of the repo to nowhere."""
    import nh3
    from markdown_it import MarkdownIt

    def relative(tag: str, attr: str, value: str) -> str | None:
        if (tag, attr) not in (("a", "href"), ("img", "src")):
            return value
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or value.startswith(("/", "#")):
            return value
        path = posixpath.normpath(unquote(parts.path))  # '%2e%2e/' climbs as '../' does
        if path.startswith("..") or path == ".":
            return None
        path = quote(path, safe="/")
        return link_base + path + (f"#{parts.fragment}" if parts.fragment else "")

    html = MarkdownIt("js-default", {"maxNesting": MAX_NESTING}).render(text)
    return Markup(nh3.clean(html, attribute_filter=relative, url_schemes={"http", "https", "mailto"},
                            link_rel="noopener noreferrer nofollow"))


def readme_of(served: ServedRepos, repo: Repo, link_base: str) -> tuple[Markup | None, str | None]:
    """The repo's README rendered (its relative links under ``link_base``), or None and why not.
    Rendered once per README blob, by one thread at a time (others wait for it, not redo it)."""
    entry = repo.files.get("README.md")
    if entry is None:
        return None, None
    if entry.size > README_RENDER_MAX:
        return None, (f"README.md is {_human_size(entry.size)}: over the {_human_size(README_RENDER_MAX)} "
                      "a page renders; download it below")
    with _RENDERING_LOCK:
        lock = _RENDERING.setdefault(entry.sha256, threading.Lock())
    with lock:
        html = _RENDERED.get(entry.sha256)
        if html is None:
            data = served.blobs.read(entry.sha256)
            if data is None:
                return None, "README.md is not in the store"
            if len(_RENDERED) >= _RENDERED_MAX:
                for old in list(_RENDERED)[: _RENDERED_MAX // 2]:
                    _RENDERED.pop(old, None)
            html = _RENDERED[entry.sha256] = str(render_markdown(split_card(data.decode("utf-8", "replace"))[1],
                                                                 LINK_BASE))
    with _RENDERING_LOCK:
        _RENDERING.pop(entry.sha256, None)
    return Markup(html.replace(f'="{LINK_BASE}', f'="{link_base}')), None


# ---- the index --------------------------------------------------------------------------------

def _sort_key(sort: str):
    """A key putting repos without the figure last, whatever the direction."""
    if sort == "name":
        return lambda s: (False, s.repo_id.casefold())
    attr = {"top1": "top1", "params": "params", "size": "size", "updated": "updated"}[sort]
    return lambda s: (getattr(s, attr) is None, getattr(s, attr) or 0)


def index(served: ServedRepos, request: Request, identity) -> Response:
    q = request.query_params
    search = q.get("q", "").strip()
    sort = q.get("sort", "name") if q.get("sort", "name") in SORTS else "name"
    order = q.get("order") if q.get("order") in ("asc", "desc") else ("asc" if sort == "name" else "desc")
    licence, library, kind = q.get("license", ""), q.get("library", ""), q.get("kind", "")
    everything = catalog(served, identity, latest_measurements(served.cache.root))
    licences = sorted({l for s in everything for l in s.licences})
    libraries = sorted({s.library for s in everything if s.library})
    words = search.lower().split()
    shown = [s for s in everything
             if all(w in s.search_text() for w in words) and (not licence or licence in s.licences)
             and (not library or s.library == library) and (not kind or s.kind == kind)]
    key = _sort_key(sort)
    present = sorted((s for s in shown if not key(s)[0]), key=key, reverse=order == "desc")
    shown = present + [s for s in shown if key(s)[0]]  # without the figure: last, in name order

    def link(**change) -> str:
        params = {"q": search, "license": licence, "library": library, "kind": kind, "sort": sort, "order": order, **change}
        return "/?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items() if v)

    def sort_link(column: str) -> str:
        flip = "asc" if sort == column and order == "desc" else "desc" if sort == column else (
            "asc" if column == "name" else "desc")
        return link(sort=column, order=flip)

    return page(request, "index.html", {
        "rows": shown, "total": len(everything), "search": search, "sort": sort, "order": order,
        "licence": licence, "library": library, "kind": kind, "licences": licences, "libraries": libraries,
        "sort_link": sort_link, "endpoint": str(request.base_url).rstrip("/")})


# ---- a repo's page ----------------------------------------------------------------------------

def repo_page(served: ServedRepos, request: Request, identity) -> Response:
    kind = read.kind_of(request)
    repo_id, revision = read.repo_id_of(request), read.revision_of(request)
    record = served.record(repo_id, kind)
    readable = not (record or {}).get("private") or bool(identity and identity.can_read(repo_id))
    repo = served.at(repo_id, revision, kind, record) if readable else None
    if repo is None:
        if readable and served.exists(repo_id, kind):
            return error_page(request, 404, "Revision not found", f"{repo_id} has no revision {revision!r}.")
        everything = catalog(served, identity)
        close = difflib.get_close_matches(repo_id.casefold(), [s.repo_id.casefold() for s in everything], n=5, cutoff=0.5)
        suggestions = [s for c in close for s in everything if s.repo_id.casefold() == c][:5]
        return error_page(request, 404, "Repository not found", f"There is no {kind} repo {repo_id} on this hub.", suggestions)
    folder = read.path_of(request).strip("/")  # .../tree/REV/FOLDER: that folder's files
    files = sorted((f for f in repo.files.values() if not folder or f.path.startswith(folder + "/")), key=lambda f: f.path)
    if folder and not files:
        return error_page(request, 404, "Folder not found", f"{repo_id} has no folder {folder!r} at {revision}.")
    measured = latest_measurements(served.cache.root)
    summary = summarize(served, repo, measured)
    prefix = ("/datasets/" if kind == "dataset" else "/") + repo_id
    endpoint = str(request.base_url).rstrip("/")
    readme, readme_note = readme_of(served, repo, f"{prefix}/resolve/{repo.commit}/")
    context = {"s": summary, "repo": repo, "prefix": prefix, "revision": revision, "endpoint": endpoint,
               "readme": readme, "readme_note": readme_note, "figures": figures(summary, served, repo),
               "metadata": metadata_rows(summary), "usage": usage(summary, repo, endpoint),
               "files": files, "folder": folder, "branches": [], "tags": [],
               "commits": [], "pulls": [], "bases": [], "heads": []}
    if repo.uploaded:
        store = served.stores[kind]
        refs = store.refs(repo_id)
        context["branches"] = sorted(refs["heads"], key=lambda r: (r[0] != "main", r[0]))
        context["tags"] = sorted(refs["tags"])
        context["commits"], _ = store.history_page(repo_id, repo.commit, RECENT_COMMITS)
        context["pulls"] = [d for d in served.discussions[kind].all(repo_id)
                            if d.get("isPullRequest") and d.get("status") in ("open", "draft")]
    else:
        context["branches"] = [("main", repo.commit)]
    if kind == "model":
        for base in summary.base_models:
            found = served.get(base) if REPO_ID_RE.match(base) else None
            visible = found is not None and (not found.private or identity is not None and identity.can_read(base))
            context["bases"].append((base, summarize(served, found) if visible else None))
        context["heads"] = heads_of(served, repo_id, identity)
    return page(request, "repo.html", context)


def figures(s: Summary, served: ServedRepos, repo: Repo) -> list[tuple[str, str, str]]:
    """(figure, value, where it comes from) for the page's table."""
    rows: list[tuple[str, str, str]] = []
    card = s.card
    if card is not None:
        if card.top1 is not None:
            rows.append(("ImageNet top-1", f"{card.top1:.2f} %", card.metrics_source or "published"))
        if card.top5 is not None:
            rows.append(("ImageNet top-5", f"{card.top5:.2f} %", card.metrics_source or "published"))
        if card.keras is not None and card.keras.top1 is not None:
            rows.append((f"Keras {card.keras.name} top-1", f"{card.keras.top1:.1f} %", card.keras.source))
        if card.params:
            rows.append(("parameters", _count(card.params), card.provenance.get("params", "card")))
        if card.depth:
            rows.append(("depth", str(card.depth), card.provenance.get("depth", "card")))
        c, h, w = card.input_size
        rows.append(("input", f"{h}x{w}, {card.interpolation}, crop {card.crop_pct:g}",
                     card.provenance.get("preprocessing", "card")))
        rows.append(("licence", card.license, card.provenance.get("license", "card")))
        if card.size_bytes:
            rows.append(("weights", _human_size(card.size_bytes), f"sha256 {card.sha256}"))
    else:
        if s.params is not None:
            dtypes = ", ".join(f"{k} {_count(v)}" for k, v in sorted(s.params_by_dtype.items()))
            rows.append(("parameters", _count(s.params), f"{s.params_source} ({dtypes})"))
        for r in s.accuracy:
            value = r["value"] * 100 if r["metric"] == "accuracy" and r["value"] <= 1 else r["value"]
            where = ", ".join(x for x in (r["dataset"], r["split"]) if x)
            rows.append((r["metric"], f"{value:.2f} %" if r["metric"] == "accuracy" else f"{value:g}",
                         f"the README's model-index{': ' + where if where else ''}"))
        if s.licence:
            rows.append(("licence", s.licence, "the README's metadata"))
    rows.append(("files", f"{len(repo.files)}, {_human_size(s.size)}", "this hub"))
    m = s.measured
    if m:
        machine = m.get("machine") or {}
        on = machine.get("gpu") or machine.get("cpu") or "this server"
        threads = f", {machine['threads']} threads" if machine.get("threads") and not machine.get("gpu") else ""
        where = (f"measured: zoo compare on {on}{threads}, torch {machine.get('torch', '?')}, "
                 f"{m.get('measured_at', '')}" + (f" (busy: {m['busy']})" if m.get("busy") else ""))
        if m.get("latency_ms") is not None:
            rows.append(("latency, batch 1", f"{m['latency_ms']:.1f} ms", where))
        if m.get("throughput") is not None:
            rows.append((f"throughput, batch {m.get('throughput_batch') or '?'}", f"{m['throughput']:.1f} img/s", where))
        if m.get("peak_rss_mb") is not None:
            rows.append(("peak memory", f"{m['peak_rss_mb']:.0f} MB", where))
        if m.get("gmacs") is not None:
            rows.append(("GMACs", f"{m['gmacs']:.2f}", where))
    return rows


def metadata_rows(s: Summary) -> list[tuple[str, str]]:
    """The README metadata a person looks for first (the rest stays in the README's YAML)."""
    meta = s.meta
    out = []
    for key in ("library_name", "pipeline_tag", "license", "datasets", "language", "tags"):
        value = meta.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        if value not in (None, ""):
            out.append((key, str(value)))
    return out


def usage(s: Summary, repo: Repo, endpoint: str) -> list[tuple[str, str]]:
    """(title, code) snippets that load or download this repo from this hub."""
    env = f"export HF_ENDPOINT={endpoint}\n"
    py = f'import os\nos.environ["HF_ENDPOINT"] = "{endpoint}"  # this hub, before the first import of huggingface_hub\n'
    if s.kind == "dataset":
        return [("hf CLI", f"{env}hf download {s.repo_id} --repo-type dataset"),
                ("Python", f'{py}from huggingface_hub import snapshot_download\n'
                           f'folder = snapshot_download("{s.repo_id}", repo_type="dataset")')]
    out = []
    if s.card is not None:
        out.append(("zoo", f'{py}import zoo\nmodel = zoo.load("{s.card.name}")           # the ImageNet classifier\n'
                           f'model = zoo.load("{s.card.name}", head=10)  # a new 10-class head'))
        out.append(("zoo CLI", f"{env}zoo pull {s.card.name}"))
    elif s.library == "zoo" or "head.safetensors" in repo.files:
        out.append(("zoo", f'{py}import zoo\nmodel = zoo.load("hf://{s.repo_id}")  # the head, and its base by sha256'))
    if "config.json" in repo.files and s.library in ("timm", None):
        out.append(("timm", f'{py}import timm\nmodel = timm.create_model("hf-hub:{s.repo_id}", pretrained=True)'))
        if s.library == "timm":
            out.append(("zoo", f'{py}import zoo\nmodel = zoo.load("hf://{s.repo_id}")'))
    out.append(("hf CLI", f"{env}hf download {s.repo_id}"))
    return out
