"""The pure parts of `lyssna demo`: the rebased feed and the terminal lines."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from lyssna.common.config import load_settings
from lyssna.common.contracts import ClassifiedPost, ModelInfo
from lyssna.local.demo import DEMO_CONFIG, DEMO_POSTS, mention_line, rebase_posts, run_env


def test_rebased_feed_starts_now_and_keeps_order_and_compressed_gaps(tmp_path):
    start = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    n, duration = rebase_posts(DEMO_POSTS, tmp_path / "p.jsonl", start=start, speedup=60)
    src = [json.loads(x) for x in DEMO_POSTS.read_text(encoding="utf-8").splitlines() if x.strip()]
    out = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()]
    assert n == len(src) == len(out)
    assert [p["id"] for p in out] == [p["id"] for p in src]
    t = [datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")) for p in out]
    o = [datetime.fromisoformat(p["created_at"].replace("Z", "+00:00")) for p in src]
    assert min(t) == start
    assert max(t) - start == timedelta(seconds=duration) == (max(o) - min(o)) / 60
    assert abs((t[250] - t[200]) - (o[250] - o[200]) / 60) < timedelta(milliseconds=1)


def test_demo_config_is_valid_and_runs_isolated_per_run():
    env = {"LYSSNA_WEBHOOK_SECRET": "x", **run_env("r1")}
    s = load_settings(DEMO_CONFIG, env=env)
    assert s.rules and s.webhooks[0].allow_private_network
    assert s.webhooks[0].url.startswith("http://127.0.0.1:")
    other = load_settings(DEMO_CONFIG, env={**env, **run_env("r2")})
    assert s.kafka.topics.model_dump().keys() == other.kafka.topics.model_dump().keys()
    assert not set(s.kafka.topics.model_dump().values()) & set(other.kafka.topics.model_dump().values())
    assert s.redis.key_prefix != other.redis.key_prefix
    assert s.alerts.app_id != other.alerts.app_id and s.classify.app_id != other.classify.app_id


def test_mention_line_is_one_compact_line():
    post = ClassifiedPost(id="x", source="file", text="Alltså.\n140 varsel på Nordvik " + "och mer text " * 10,
                          created_at=datetime(2030, 1, 1, 9, 30, tzinfo=timezone.utc), lang="sv",
                          orgs=["Nordvik Energi"], topics=["employee_satisfaction"], sentiment="negative",
                          model=ModelInfo(encoder="e", heads="h"))
    line = mention_line(post)
    assert "\n" not in line
    assert "Nordvik Energi" in line and "employee_satisfaction" in line and "negative" in line
    assert line.endswith("…") and "Alltså. 140 varsel" in line
