"""The rules in force: those of the config file plus those made through the API.

Config rules are read-only through the API (the file is the source of truth
for them); API rules live in Redis. A rule must fit what the counts can
answer: its window a whole number of count buckets, its look-back (a spike's
baseline included) within the count retention.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Mapping

from pydantic import ValidationError

from lyssna.common.config import RuleConfig, Settings, SpikeCondition
from lyssna.common.durations import format_duration


class RuleError(ValueError):
    """A rule that cannot run here; the message says why and how to fix it."""


def lookback(rule: RuleConfig) -> timedelta:
    """How far back in time the rule reads counts."""
    if isinstance(rule.condition, SpikeCondition):
        return rule.window * (rule.condition.baseline_windows + 1)
    return rule.window


def check_rule(rule: RuleConfig, settings: Settings) -> None:
    """Raise :class:`RuleError` when ``rule`` cannot be evaluated with ``settings``."""
    if broken := settings.broken_references(rule):
        raise RuleError(f"{broken[0].message}; {broken[0].fix}")
    bucket = settings.alerts.bucket
    if rule.window < bucket or rule.window % bucket:
        raise RuleError(f"rule {rule.name!r}: window {format_duration(rule.window)} is not a whole "
                        f"number of count buckets ({format_duration(bucket)}, alerts.bucket); "
                        f"use a multiple of it")
    if lookback(rule) > settings.alerts.retention:
        raise RuleError(f"rule {rule.name!r} looks back {format_duration(lookback(rule))}, longer than "
                        f"counts are kept (alerts.retention {format_duration(settings.alerts.retention)}); "
                        f"shorten the window or baseline_windows, or raise alerts.retention")


def parse_api_rule(raw: str) -> RuleConfig:
    return RuleConfig.model_validate_json(raw)


def merge(settings: Settings, api_rules: Mapping[str, str]) -> tuple[list[RuleConfig], list[str]]:
    """The rules to evaluate, and a warning for each stored API rule that no longer fits
    (a webhook or organization it names was removed from the config, or a config
    rule took its name)."""
    rules = list(settings.rules)
    names = {r.name for r in rules}
    problems = []
    for name, raw in sorted(api_rules.items()):
        if name in names:
            problems.append(f"API rule {name!r} is shadowed by the config rule of the same name")
            continue
        try:
            rule = parse_api_rule(raw)
            check_rule(rule, settings)
        except (ValidationError, RuleError) as e:
            problems.append(f"API rule {name!r} skipped: {e}")
            continue
        rules.append(rule)
    return rules, problems
