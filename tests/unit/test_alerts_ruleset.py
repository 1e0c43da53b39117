"""Which rules run (config + API), what they must fit, and how secrets are kept out of sight."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from lyssna.alerts.delivery import mask_url, scrub
from lyssna.alerts.engine import pick_samples
from lyssna.alerts.ruleset import RuleError, check_rule, lookback, merge
from lyssna.alerts.windows import Window
from lyssna.common.config import RuleConfig, Settings, WebhookConfig
from lyssna.common.contracts import ClassifiedPost, ModelInfo


def settings(**alerts) -> Settings:
    return Settings.model_validate({
        "alerts": {"bucket": "1m", "retention": "2d", **alerts},
        "organizations": [{"name": "Acme"}],
        "webhooks": [{"name": "hook", "url": "https://hooks.example.com/x"}],
        "rules": [{"name": "cfg", "condition": {"type": "count", "threshold": 5}, "notify": ["hook"]}],
    })


def rule(**kw) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", "condition": {"type": "count", "threshold": 1}, **kw})


def test_lookback_of_a_spike_includes_its_baseline():
    assert lookback(rule(window="1h")) == timedelta(hours=1)
    spike = rule(window="1h", condition={"type": "spike", "factor": 2, "baseline_windows": 24})
    assert lookback(spike) == timedelta(hours=25)


@pytest.mark.parametrize("kw, fragment", [
    ({"notify": ["slack"]}, "unknown webhook 'slack'"),
    ({"org": "Globex"}, "unknown organization 'Globex'"),
    ({"window": "90s"}, "not a whole number of count buckets (1m"),
    ({"window": "30s"}, "not a whole number of count buckets"),
    ({"window": "1d", "condition": {"type": "spike", "factor": 2, "baseline_windows": 2}},
     "looks back 3d, longer than counts are kept (alerts.retention 2d)"),
])
def test_rules_that_cannot_run_are_refused_with_the_reason(kw, fragment):
    with pytest.raises(RuleError) as err:
        check_rule(rule(**kw), settings())
    assert fragment in str(err.value)


@pytest.mark.parametrize("kw", [{"notify": ["hook", "slack"]}, {"org": "Globex"}])
def test_a_rule_from_the_api_and_one_from_the_file_are_refused_in_the_same_words(kw):
    with pytest.raises(RuleError) as api:
        check_rule(rule(**kw), settings())
    with pytest.raises(ValidationError) as file:
        Settings.model_validate({**settings().model_dump(mode="json"), "rules": [rule(**kw).model_dump(mode="json")]})
    ref = file.value.errors()[0]["ctx"]["error"]
    assert str(api.value) == f"{ref.message}; {ref.fix}"


def test_a_fitting_rule_passes():
    check_rule(rule(org="Acme", window="2h", notify=["hook"]), settings())


def test_merge_keeps_config_rules_and_skips_api_rules_that_no_longer_fit():
    api = {
        "ok": rule(name="ok").model_dump_json(),
        "cfg": rule(name="cfg").model_dump_json(),
        "stale": rule(name="stale", notify=["removed-hook"]).model_dump_json(),
        "garbage": "{",
    }
    rules, problems = merge(settings(), api)
    assert [r.name for r in rules] == ["cfg", "ok"]
    assert len(problems) == 3
    assert any("shadowed by the config rule" in p for p in problems)
    assert any("'stale' skipped" in p and "removed-hook" in p for p in problems)


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/***"),
    ("https://example.com/", "https://example.com"),
    ("https://example.com", "https://example.com"),
    ("http://127.0.0.1:9000/hook?token=abc", "http://127.0.0.1:9000/***"),
    ("https://user:pw@example.com:8443/x", "https://example.com:8443/***"),
    ("http://[::1]:8080/a", "http://[::1]:8080/***"),
])
def test_webhook_urls_are_shown_without_path_query_or_credentials(url, shown):
    assert mask_url(url) == shown


def test_error_messages_lose_the_url_and_its_path():
    hook = WebhookConfig(name="h", url="https://hooks.example.com/services/SECRET?sig=QSECRET")
    text = scrub("POST https://hooks.example.com/services/SECRET?sig=QSECRET failed; path /services/SECRET", hook)
    assert "SECRET" not in text
    assert "https://hooks.example.com/***" in text
    assert len(scrub("x" * 5000, hook)) == 500


def test_samples_are_the_newest_matching_posts_in_the_window():
    t0 = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)
    model = ModelInfo(encoder="e", heads="h")

    def post(pid, minute, sentiment="negative", url=True):
        return ClassifiedPost(id=pid, source="t", text=f"post {pid}", url=f"https://x/{pid}" if url else None,
                              created_at=t0 + timedelta(minutes=minute), lang="sv", orgs=["Acme"],
                              topics=["employee_satisfaction"], sentiment=sentiment, model=model)

    posts = [post("old", -5), post("a", 1), post("b", 2), post("pos", 3, "positive"), post("nolink", 4, url=False),
             post("c", 5)]
    r = rule(org="Acme", sentiment="negative")
    got = pick_samples(r, Window(t0, t0 + timedelta(hours=1)), posts, 3)
    assert [s.id for s in got] == ["c", "b", "a"]  # newest with links first; other sentiment and window out
    assert [s.id for s in pick_samples(r, Window(t0, t0 + timedelta(hours=1)), posts, 5)] == [
        "c", "b", "a", "nolink"]
