"""Webhook bodies: one alert event rendered for each kind of receiver.

- ``json``: the versioned Lyssna payload (``schema: lyssna.webhook.v1``) for
  receivers written against Lyssna itself.
- ``slack``: a Slack incoming-webhook message (``text`` fallback + Block Kit
  ``blocks``).
- ``teams``: a Microsoft Teams message with one Adaptive Card attachment, the
  form Teams workflows ("Post to a channel when a webhook request is
  received") and connectors accept.
- ``alertmanager``: the Prometheus Alertmanager webhook body (version 4), so
  receivers built for Alertmanager (PagerDuty bridges, chat relays...) work
  unchanged.

Each renderer is registered under its format name (``@renderer("slack")``) in
:data:`RENDERERS`, which :func:`render` looks up; the names themselves are in
:mod:`lyssna.common.webhook_formats`, which the config validates against. A
new format is a name there and a renderer here.

Rendering is deterministic: the same event gives the same bytes, so a retry
sends exactly what the first attempt sent.

Sample posts go out as each webhook says (``samples``: ``text``, ``link`` or
``none``), and their text with @handles and e-mail addresses masked unless the
webhook sets ``mask_samples: false``: a chat channel is read by more people
than the alerts API, and who wrote a post is rarely what HR needs to know.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable, Literal, Protocol

import re2

from lyssna.common.contracts import AlertEvent, AlertState, SamplePost
from lyssna.common.webhook_formats import WEBHOOK_FORMATS

WEBHOOK_SCHEMA = "lyssna.webhook.v1"
CONTENT_TYPE = "application/json"

# Alertmanager writes this zero time as endsAt of alerts that are still firing.
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"
SAMPLE_CHARS = 280  # a sample is a reminder of the post, not the post
_SLACK_SECTION_MAX = 3000


def _iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _clip(text: str, limit: int = SAMPLE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# One pass, leftmost match first: "@anna@mastodon.social" is one handle, and in
# "anna@nordvik.se" the address starts before its "@", so it is masked whole.
# RE2: linear time whatever the text.
_PERSONAL = re2.compile(r"(@[\pL\pN_](?:[\pL\pN_.-]*[\pL\pN_])?(?:@[\pL\pN-]+(?:\.[\pL\pN-]+)+)?)"
                        r"|[\pL\pN_.%+-]+@[\pL\pN-]+(?:\.[\pL\pN-]+)+")
MASKED_HANDLE = "@…"
MASKED_EMAIL = "[e-mail]"

SampleMode = Literal["text", "link", "none"]


def mask_personal(text: str) -> str:
    """``text`` with @handles (also ``@user@instance``) replaced by ``@…`` and e-mail
    addresses by ``[e-mail]``."""
    return _PERSONAL.sub(lambda m: MASKED_HANDLE if m.group(1) else MASKED_EMAIL, text)


def sample_policy(samples: list[SamplePost], mode: SampleMode, mask: bool) -> list[SamplePost]:
    """The samples a webhook gets: with their (masked) text, as links only (text
    empty; samples without a link are left out), or none."""
    if mode == "none":
        return []
    if mode == "link":
        return [SamplePost(id=s.id, url=s.url, text="") for s in samples if s.url]
    return [SamplePost(id=s.id, url=s.url, text=mask_personal(s.text) if mask else s.text) for s in samples]


def _fmt_number(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:g}" if isinstance(x, float) else str(x)


def alert_url(base_url: str | None, alert_id: str) -> str | None:
    """Where the alert can be looked at in the alerts API, when its address is known."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/v1/alerts/{alert_id}"


def event_type(event: AlertEvent) -> str:
    return "alert.firing" if event.state == AlertState.firing else "alert.resolved"


def title(event: AlertEvent) -> str:
    word = "Firing" if event.state == AlertState.firing else "Resolved"
    return f"[{word}] {event.rule}: {event.org}"


def _scope(event: AlertEvent) -> str:
    parts = [f"{k} {v}" for k, v in (("topic", event.topic), ("sentiment", event.sentiment),
                                        ("language", event.lang)) if v]
    return ", ".join(parts) if parts else "all mentions"


def description(event: AlertEvent) -> str:
    """One plain sentence saying what happened, for every format."""
    window = f"{_iso(event.window_start)} to {_iso(event.window_end)}"
    figures = [f"value {_fmt_number(event.value)}"]
    if event.threshold is not None:
        figures.append(f"threshold {_fmt_number(event.threshold)}")
    if event.baseline is not None:
        figures.append(f"baseline {_fmt_number(event.baseline)}")
    verb = "matched" if event.state == AlertState.firing else "no longer matches"
    by = f" by {event.authors} distinct authors" if event.authors is not None else ""
    return (f"Rule {event.rule} {verb} for {event.org} ({_scope(event)}): "
            f"{event.count} mentions{by} from {window}; {', '.join(figures)}.")


# ---------------------------------------------------------------- the registry

class Renderer(Protocol):
    """An event as one format's JSON document. ``base_url`` is the alerts API's public
    address, for links back to the alert; ``receiver`` is the webhook's name."""

    def __call__(self, event: AlertEvent, *, base_url: str | None = None,
                 receiver: str = "lyssna") -> dict[str, Any]: ...


RENDERERS: dict[str, Renderer] = {}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register the decorated function as the renderer of webhook format ``name``."""
    if name not in WEBHOOK_FORMATS:
        raise ValueError(f"webhook format {name!r} is not in lyssna.common.webhook_formats.WEBHOOK_FORMATS; "
                         f"add it there so that the config accepts it")

    def register(fn: Renderer) -> Renderer:
        if name in RENDERERS:
            raise ValueError(f"webhook format {name!r} has two renderers: {RENDERERS[name].__name__} "
                             f"and {fn.__name__}")
        RENDERERS[name] = fn
        return fn
    return register


# ---------------------------------------------------------------- json

@renderer("json")
def render_json(event: AlertEvent, *, base_url: str | None = None, receiver: str = "lyssna") -> dict[str, Any]:
    return {
        "schema": WEBHOOK_SCHEMA,
        "type": event_type(event),
        "alert_id": event.alert_id,
        "event_id": event.event_id,
        "rule": event.rule,
        "organization": event.org,
        "topic": event.topic.value if event.topic else None,
        "sentiment": event.sentiment.value if event.sentiment else None,
        "lang": event.lang,
        "window": {"start": _iso(event.window_start), "end": _iso(event.window_end)},
        "count": event.count,
        "authors": event.authors,
        "threshold": event.threshold,
        "baseline": event.baseline,
        "value": event.value,
        "samples": [{"id": s.id, "url": s.url, **({"text": _clip(s.text)} if s.text else {})}
                    for s in event.samples],
        "occurred_at": _iso(event.occurred_at),
        "url": alert_url(base_url, event.alert_id),
    }


# ---------------------------------------------------------------- slack

def slack_escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    # '|' ends the URL part of a Slack link, so it cannot appear unescaped in it.
    return f"<{slack_escape(url).replace('|', '%7C')}|{slack_escape(label).replace('|', '¦')}>"


@renderer("slack")
def render_slack(event: AlertEvent, *, base_url: str | None = None, receiver: str = "lyssna") -> dict[str, Any]:
    icon = ":rotating_light:" if event.state == AlertState.firing else ":white_check_mark:"
    url = alert_url(base_url, event.alert_id)
    heading = f"*{slack_escape(title(event))}*"
    if url:
        heading = f"*{_slack_link(url, title(event))}*"
    blocks: list[dict[str, Any]] = [
        {"type": "section",
         "text": {"type": "mrkdwn",
                  "text": f"{icon} {heading}\n{slack_escape(description(event))}"[:_SLACK_SECTION_MAX]}},
    ]
    for s in event.samples:
        lines = [f"> {slack_escape(_clip(s.text))}"] if s.text else []
        if s.url:
            lines.append(_slack_link(s.url, "open post"))
        text = "\n".join(lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_SLACK_SECTION_MAX]}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": slack_escape(f"alert {event.alert_id} · event {event.event_id} · "
                                                f"{_iso(event.occurred_at)}")}]})
    return {"text": slack_escape(f"{title(event)}: {description(event)}"), "blocks": blocks}


# ---------------------------------------------------------------- teams

@renderer("teams")
def render_teams(event: AlertEvent, *, base_url: str | None = None, receiver: str = "lyssna") -> dict[str, Any]:
    firing = event.state == AlertState.firing
    facts = [{"title": k, "value": v} for k, v in (
        ("Organization", event.org),
        ("Scope", _scope(event)),
        ("Window", f"{_iso(event.window_start)} – {_iso(event.window_end)}"),
        ("Mentions", str(event.count)),
        ("Authors", _fmt_number(event.authors)),
        ("Value", _fmt_number(event.value)),
        ("Threshold", _fmt_number(event.threshold)),
        ("Baseline", _fmt_number(event.baseline)),
        ("Alert id", event.alert_id),
    )]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title(event), "weight": "Bolder", "size": "Medium",
         "color": "Attention" if firing else "Good", "wrap": True},
        {"type": "TextBlock", "text": description(event), "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    for s in event.samples:
        if s.text:
            body.append({"type": "TextBlock", "text": _clip(s.text), "wrap": True, "isSubtle": True,
                         "separator": True})
    actions = [{"type": "Action.OpenUrl", "title": "Open post", "url": s.url}
               for s in event.samples if s.url]
    url = alert_url(base_url, event.alert_id)
    if url:
        actions.insert(0, {"type": "Action.OpenUrl", "title": "Open alert", "url": url})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


# ---------------------------------------------------------------- alertmanager

_FNV64_OFFSET = 14695981039346656037
_FNV64_PRIME = 1099511628211
_SEPARATOR = 0xFF


def alertmanager_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's own fingerprint of a label set (FNV-1a 64 over sorted
    name/value pairs, each followed by 0xff), so receivers that deduplicate by
    fingerprint see the same value Alertmanager would send."""
    h = _FNV64_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), labels[name].encode()):
            for byte in chunk + bytes([_SEPARATOR]):
                h = ((h ^ byte) * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def alertmanager_labels(event: AlertEvent) -> dict[str, str]:
    labels = {"alertname": event.rule, "org": event.org, "source": "lyssna"}
    # Alertmanager has no null labels: an absent label is simply left out.
    for k, v in (("topic", event.topic), ("sentiment", event.sentiment), ("lang", event.lang)):
        if v:
            labels[k] = str(v)
    return labels


@renderer("alertmanager")
def render_alertmanager(event: AlertEvent, *, base_url: str | None = None,
                        receiver: str = "lyssna") -> dict[str, Any]:
    status = "firing" if event.state == AlertState.firing else "resolved"
    labels = alertmanager_labels(event)
    annotations = {
        "summary": title(event),
        "description": description(event),
        "alert_id": event.alert_id,
        "event_id": event.event_id,
        "count": str(event.count),
    }
    if event.authors is not None:
        annotations["authors"] = str(event.authors)
    for k in ("value", "threshold", "baseline"):
        v = getattr(event, k)
        if v is not None:
            annotations[k] = _fmt_number(v)
    group_labels = {"alertname": labels["alertname"], "org": labels["org"]}
    group_key = "{}:{" + ", ".join(f'{k}={json.dumps(v, ensure_ascii=False)}'
                                   for k, v in sorted(group_labels.items())) + "}"
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        # The event does not carry when the alert first fired; the window it
        # was measured in is the honest start for both states.
        "startsAt": _iso(event.window_start),
        "endsAt": ALERTMANAGER_ZERO_TIME if status == "firing" else _iso(event.occurred_at),
        "generatorURL": alert_url(base_url, event.alert_id) or "",
        "fingerprint": alertmanager_fingerprint(labels),
    }
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": (base_url or "").rstrip("/"),
        "alerts": [alert],
    }


# ---------------------------------------------------------------- entry point

if set(RENDERERS) != set(WEBHOOK_FORMATS):  # a name the config accepts but nothing renders
    raise RuntimeError(f"webhook formats without a renderer: {sorted(set(WEBHOOK_FORMATS) - set(RENDERERS))}")

FORMATS = tuple(RENDERERS)

def render(format: str, event: AlertEvent, *, base_url: str | None = None,
           receiver: str | None = None, samples: SampleMode = "text",
           mask_samples: bool = True) -> tuple[bytes, str]:
    """``(body bytes, content type)`` of ``event`` for a webhook of ``format``.

    ``base_url`` is the alerts API's public address, for links back to the
    alert; ``receiver`` is the webhook's name (Alertmanager's ``receiver``);
    ``samples`` and ``mask_samples`` are the webhook's, see :func:`sample_policy`.
    """
    draw = RENDERERS.get(format)
    if draw is None:
        raise ValueError(f"unknown webhook format {format!r}; use one of {', '.join(FORMATS)}")
    event = event.model_copy(update={"samples": sample_policy(list(event.samples), samples, mask_samples)})
    return _dumps(draw(event, base_url=base_url, receiver=receiver or "lyssna")), CONTENT_TYPE
