"""The HTML a person sees at ``/``: the served repos with their card figures."""

from __future__ import annotations

import html

from zoo.cards.registry import get_registry
from zoo.hub.served import ServedRepos


def index_page(served: ServedRepos) -> str:
    """A plain page of the public repos with their card figures, for a person browsing the mirror."""
    cards = {}
    for card in get_registry().cards:
        cards.setdefault(card.hub_repo, card)
    rows = []
    for repo_id in served.repo_ids():
        repo = served.get(repo_id)
        if repo is None or repo.private:  # the page is for anyone who can reach the server
            continue
        card = cards.get(repo_id)
        size = sum(f.size for f in repo.files.values()) / 1e6
        top1 = f"{card.top1:.2f}" if card and card.top1 is not None else ""
        params = f"{card.params / 1e6:.1f} M" if card and card.params else ""
        rows.append(f"<tr><td>{html.escape(repo_id)}</td><td>{html.escape(card.name if card else '')}</td>"
                    f"<td>{top1}</td><td>{params}</td><td>{size:.1f} MB</td><td>{len(repo.files)}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>zoo hub</title></head><body>"
            "<h1>zoo hub</h1><p>A Hugging Face-compatible mirror: set <code>HF_ENDPOINT</code> to this address.</p>"
            "<table border='1' cellpadding='4'><tr><th>repo</th><th>card</th><th>top-1 %</th><th>params</th>"
            "<th>size</th><th>files</th></tr>" + "".join(rows) + "</table></body></html>")
