"""The classify worker against the real broker: batches in, classified posts out,
poison to the dead-letter topic, and nothing lost when the worker is killed."""

import json

import httpx

import pytest

from lyssna.common.contracts import ClassifiedPost, DeadLetter, Post
from tests.helpers.kafka_io import ServiceProcess, free_port, produce, read_all, topic_size, wait_for

pytestmark = pytest.mark.integration

TEXTS = [
    "Vi söker nya kollegor till Acmes lager i Borås! Ansök via länken 👉 #jobb",
    "Fick veta om omorganisationen på Acme via pressen innan chefen sa nåt. Snyggt.",
    "Acme Robotics kundtjänst löste mitt problem på fem minuter, toppen!",
    "Sjukt stressigt på Acme just nu, tredje helgen i rad med övertid.",
    "Acme svarade direkt på Instagram när jag frågade om leveransen 👍",
    "Regn hela veckan i Göteborg, typiskt november.",
]


def posts(n: int, prefix: str) -> list[Post]:
    return [Post(id=f"{prefix}-{i}", source="test", text=TEXTS[i % len(TEXTS)] + f" ({i})") for i in range(n)]


def classified_ids(infra, topic) -> set[str]:
    return {ClassifiedPost.from_bytes(v).id for v in read_all(infra.bootstrap_servers, topic, idle_ms=800)}


def service_env(settings, topics, unique_id, port) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers, "REDIS_URL": settings.redis.url,
            "LYSSNA_CLASSIFY_PORT": str(port), "LYSSNA_CLASSIFY_APP_ID": f"classify-test-{unique_id}",
            **topics.as_env()}


@pytest.fixture
def watchlist_config(tmp_path):
    path = tmp_path / "lyssna.yaml"
    path.write_text("organizations:\n  - name: Acme Robotics\n    aliases: [Acme]\n"
                    "classify:\n  batch_size: 32\n  batch_within: 100ms\n")
    return path


def test_posts_in_classified_out_and_poison_to_deadletter(infra, topics, settings, unique_id,
                                                                watchlist_config, tmp_path):
    port = free_port()
    worker = ServiceProcess("classify", service_env(settings, topics, unique_id, port), port=port,
                            log_dir=tmp_path, config=watchlist_config).start()
    try:
        worker.wait_ready()
        batch = posts(40, "ok")
        poison = [(b"bad-json", b"{not json"), (b"bad-schema", json.dumps({"schema": "x", "id": "p"}).encode()),
                  (b"no-text", json.dumps({"schema": "lyssna.post.v1", "id": "p2", "source": "t"}).encode())]
        produce(infra.bootstrap_servers, topics.posts_raw,
                [(p.id.encode(), p.to_bytes()) for p in batch[:20]] + poison
                + [(p.id.encode(), p.to_bytes()) for p in batch[20:]])
        # classify.scope is "mentions" (the default): the weather post (every sixth)
        # names no watched organization, so it is counted and dropped, never encoded.
        irrelevant = {p.id for p in batch if "Acme" not in p.text}
        want = {p.id for p in batch} - irrelevant
        assert len(irrelevant) == 6
        wait_for(lambda: want <= classified_ids(infra, topics.posts_classified), timeout=120,
                         what="every good post classified (the stream went on past the poison)")
        wait_for(lambda: 'lyssna_classify_posts_total{outcome="skipped"} 6.0'
                 in httpx.get(f"http://127.0.0.1:{port}/metrics").text, what="the irrelevant posts counted")
        out = {c.id: c for c in map(ClassifiedPost.from_bytes, read_all(infra.bootstrap_servers,
                                                                        topics.posts_classified))}
        assert set(out) == want, "a post without a watched organization was kept past classification"
        assert out["ok-0"].orgs == ["Acme Robotics"] and "recruitment" in out["ok-0"].topics
        assert out["ok-0"].skipped is None
        assert set(out["ok-0"].topic_scores) == {"recruitment", "employer_branding", "internal_communication",
                                                 "employee_satisfaction", "customer_satisfaction", "engagement"}
        dead = wait_for(lambda: [DeadLetter.from_bytes(v) for v in
                                 read_all(infra.bootstrap_servers, topics.deadletter)] or None,
                        what="the dead letters")
        by_key = {d.key: d for d in dead}
        assert set(by_key) == {"bad-json", "bad-schema", "no-text"}
        assert "text" in by_key["no-text"].reason and by_key["bad-json"].payload == "{not json"
        assert all(d.service == "classify" and d.topic == topics.posts_raw for d in dead)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'lyssna_classify_posts_total{outcome="deadletter"} 3.0' in metrics
        assert 'lyssna_classify_mentions_total{lang="sv",org="Acme Robotics"' in metrics
        assert f"lyssna_classify_encoded_posts_total {float(len(want))}" in metrics  # never the irrelevant ones
        assert 'lyssna_classify_skipped_total{channel="other",lang="sv"} 6.0' in metrics
    finally:
        worker.stop()


def test_worker_killed_mid_stream_leaves_no_post_unclassified(infra, topics, settings, unique_id,
                                                                    watchlist_config, tmp_path):
    # Forwarded, the posts without a watched organization leave a record too, so
    # "nothing lost" is checked for both paths through the worker.
    config = tmp_path / "forward.yaml"
    config.write_text(watchlist_config.read_text() + "  irrelevant: forward\n")
    port = free_port()
    worker = ServiceProcess("classify", service_env(settings, topics, unique_id, port), port=port,
                            log_dir=tmp_path, config=config).start()
    batch = posts(3000, "k")
    try:
        worker.wait_ready()
        produce(infra.bootstrap_servers, topics.posts_raw, [(p.id.encode(), p.to_bytes()) for p in batch])
        # Kill once part of the stream is through, wherever the worker is in a batch.
        wait_for(lambda: topic_size(infra.bootstrap_servers, topics.posts_classified) >= 50, timeout=120, interval=0.1,
                         what="the worker to be mid-stream")
        worker.kill()
        done_before = len(classified_ids(infra, topics.posts_classified))
        worker.start().wait_ready()
        want = {p.id for p in batch}
        wait_for(lambda: want <= classified_ids(infra, topics.posts_classified), timeout=240,
                         interval=2, what="every post classified after the restart")
        assert done_before < len(want), "the kill came too late to test anything"
    finally:
        worker.stop()
