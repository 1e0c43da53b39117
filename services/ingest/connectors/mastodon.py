"""Mastodon hashtag and account timelines through the public REST API.

The cursor is the id of the newest status already ingested (the ``since_id`` of
the Mastodon docs). Polls ask with ``min_id=<cursor>``: Mastodon then answers
with the statuses *immediately* after the cursor, and following the ``Link``
header's ``rel="prev"`` walks forward page by page. Unlike ``since_id`` (which
returns the newest page and leaves a gap after a long pause) nothing is skipped,
and each page becomes a batch with its own cursor. A first start without a
cursor takes only the newest page instead of backfilling history.

Status HTML is reduced to text; a boost is ingested as the boosted status, keyed
by its ActivityPub ``uri`` so the same status seen through two instances or two
timelines is one post.

Requests go through fetch.safe_get (addresses and redirects checked, bodies
capped while they stream) and JSON is parsed in a worker thread, off the event
loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx

from lyssna.common.config import MastodonSource
from lyssna.common.contracts import Post

from ..html_text import html_to_text
from ..normalize import Rejection
from .base import USER_AGENT, Batch, SourceError, clip_text, malformed, prepared, register, source_time
from .fetch import Fetched, FetchPolicy, PolledHttpConnector, safe_get

PAGE_SIZE = 40          # the API's maximum
MAX_PAGES_PER_POLL = 25  # bounded catch-up per poll; the rest follows on the next poll


def id_order(status_id: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings of growing length: compare by length, then text."""
    return (len(status_id), status_id)


def status_to_post(status: Any, *, instance: str) -> Post | Rejection | None:
    """A status from the REST API as a Post; None for one without text (media only)."""
    try:
        shown = status.get("reblog") or status
        account = shown.get("account") or {}
        text = html_to_text(shown.get("content"))
        spoiler = (shown.get("spoiler_text") or "").strip()
        if spoiler:
            text = f"{spoiler}\n\n{text}" if text else spoiler
        if not text:
            return None
        uri = shown.get("uri") or f"{instance}/statuses/{shown['id']}"
        url = shown.get("url") or shown.get("uri")
        lang = shown.get("language")
        return Post(
            id=f"mastodon:{uri}"[:512], source="mastodon",
            url=url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
            author=(account.get("acct") or account.get("username") or None),
            text=clip_text(text), created_at=source_time(shown.get("created_at")),
            lang_hint=lang if isinstance(lang, str) and len(lang) <= 16 else None,
            metadata={"instance": instance, "status_id": str(status.get("id")),
                      "tags": [t.get("name") for t in shown.get("tags") or [] if isinstance(t, dict)][:20],
                      **({"boosted_by": (status.get("account") or {}).get("acct")} if status.get("reblog") else {})},
        )
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        return malformed(f"mastodon status from {instance}", e, status)


@register
class MastodonConnector(PolledHttpConnector):
    type = "mastodon"
    source_model = MastodonSource

    def __init__(self, source: MastodonSource, name: str, *, client: httpx.AsyncClient | None = None,
                 timeout_s: float = 30.0, policy: FetchPolicy | None = None):
        self.instance = source.instance.rstrip("/")
        self.hashtag = source.hashtag.lstrip("#") if source.hashtag else None
        self.account = source.account.lstrip("@") if source.account else None
        what = f"tag:{self.hashtag}" if self.hashtag else f"account:{self.account}"
        super().__init__(name, f"{self.instance}|{what}")
        self.interval_s = source.interval.total_seconds()
        self.retry_base_s = min(self.interval_s, 30.0)
        self.retry_cap_s = max(self.interval_s, 900.0)
        self._account_id: str | None = None
        self.policy = policy or FetchPolicy(allow_private_network=source.allow_private_network)
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                                   headers={"User-Agent": USER_AGENT,
                                                            "Accept": "application/json"})
        self._own_client = client is None

    async def _get(self, url: str, params: dict[str, str] | None = None) -> tuple[Fetched, Any]:
        """The answer and its JSON document."""
        resp = await safe_get(self._client, url, self.policy, params=params)
        if resp.status != 200:
            ra = resp.headers.get("retry-after", "")
            raise SourceError(f"GET {url}: HTTP {resp.status}",
                              retry_after=float(ra) if ra.strip().isdigit() else None)
        try:
            return resp, await asyncio.to_thread(json.loads, resp.body)
        except (ValueError, RecursionError) as e:
            raise SourceError(f"GET {url}: answer is not JSON") from e

    async def _timeline_url(self) -> str:
        if self.hashtag:
            return f"{self.instance}/api/v1/timelines/tag/{quote(self.hashtag, safe='')}"
        if self._account_id is None:
            _, doc = await self._get(f"{self.instance}/api/v1/accounts/lookup", {"acct": self.account})
            try:
                self._account_id = str(doc["id"])
            except (KeyError, TypeError) as e:
                raise SourceError(f"account lookup for {self.account!r} answered without an id") from e
        return f"{self.instance}/api/v1/accounts/{self._account_id}/statuses"

    async def batches(self, cursor: str | None) -> AsyncIterator[Batch]:
        newest = cursor
        while True:
            url: str | None = await self._timeline_url()
            params: dict[str, str] | None = {"limit": str(PAGE_SIZE)}
            first_start = newest is None
            if newest:
                params["min_id"] = newest
            for _ in range(MAX_PAGES_PER_POLL):
                resp, statuses = await self._get(url, params)
                if not isinstance(statuses, list):
                    raise SourceError(f"GET {url}: expected a list of statuses")
                ids = [str(s["id"]) for s in statuses if isinstance(s, dict) and "id" in s]
                if not ids:
                    break
                page_newest = max(ids, key=id_order)
                if newest is None or id_order(page_newest) > id_order(newest):
                    newest = page_newest
                items = [p for p in (status_to_post(s, instance=self.instance) for s in statuses)
                         if p is not None]
                yield Batch(prepared(items), newest)
                if first_start:
                    break
                url = resp.links.get("prev", {}).get("url")
                params = None
                # Follow pagination only on the instance itself.
                if not url or not url.startswith(self.instance + "/"):
                    break
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
