"""``/v1/rules``: the config file's rules (read-only here) and the API's own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from lyssna.common.config import RuleConfig, Settings
from lyssna.common.problems import error_responses

from ...ruleset import RuleError, check_rule, merge
from ..deps import AuditDep, SettingsDep, StoreDep

router = APIRouter(prefix="/rules", tags=["rules"])


class RuleOut(BaseModel):
    source: str = Field(description="'config' (read-only here) or 'api'")
    rule: dict[str, Any]


class RulesOut(BaseModel):
    rules: list[RuleOut]


def _config_names(settings: Settings) -> set[str]:
    return {r.name for r in settings.rules}


async def _all_rules(settings: Settings, store) -> list[RuleOut]:
    rules, _ = merge(settings, await store.api_rules())
    config = _config_names(settings)
    return [RuleOut(source="config" if r.name in config else "api", rule=r.model_dump(mode="json"))
            for r in rules]


def _validated(rule: RuleConfig, settings: Settings) -> RuleConfig:
    """A rule the schema admits may still not run here (an unknown webhook, a window
    that is no whole number of count buckets): 422 with the reason."""
    try:
        check_rule(rule, settings)
    except RuleError as e:
        raise HTTPException(422, str(e)) from None
    return rule


def _refuse_config_rule(name: str, settings: Settings) -> None:
    if name in _config_names(settings):
        raise HTTPException(409, f"rule {name!r} is defined in the config file and is read-only here; "
                                 f"change it in the file")


def _api_rule(rule: RuleConfig) -> RuleOut:
    return RuleOut(source="api", rule=rule.model_dump(mode="json"))


@router.get("", response_model=RulesOut)
async def list_rules(settings: SettingsDep, store: StoreDep):
    return RulesOut(rules=await _all_rules(settings, store))


@router.get("/{name}", response_model=RuleOut, responses=error_responses(404))
async def get_rule(name: str, settings: SettingsDep, store: StoreDep):
    for r in await _all_rules(settings, store):
        if r.rule["name"] == name:
            return r
    raise HTTPException(404, f"no rule named {name!r}")


_BY_NAME = {"name": "$response.body#/rule/name"}
_CREATED = {"description": "the rule, evaluated from now on", "links": {
    f"{verb.title()}Rule": {"operationRef": f"#/paths/~1v1~1rules~1{{name}}/{verb}", "parameters": _BY_NAME}
    for verb in ("get", "put", "delete")}}


def document_names(schema: dict, settings: Settings) -> dict:
    """Name in RuleConfig's schema the webhooks and organizations this service has, so the
    document admits only rules it can run (a rule naming others is refused with 422)."""
    rule = schema.get("components", {}).get("schemas", {}).get("RuleConfig")
    if rule is not None:
        rule["properties"]["notify"]["items"] = {"type": "string", "enum": [w.name for w in settings.webhooks]}
        rule["properties"]["org"] = {**rule["properties"]["org"], "type": "string",
                                     "enum": ["*", *(o.name for o in settings.organizations)]}
    return schema


@router.post("", response_model=RuleOut, status_code=201, responses={201: _CREATED, **error_responses(409, 422)})
async def create_rule(rule: RuleConfig, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    if rule.name in _config_names(settings):
        raise HTTPException(409, f"a config rule is named {rule.name!r}; choose another name")
    _validated(rule, settings)
    if not await store.create_api_rule(rule):
        raise HTTPException(409, f"a rule named {rule.name!r} exists; PUT /v1/rules/{rule.name} to change it")
    await audit("rule.create", rule.name)
    return _api_rule(rule)


@router.put("/{name}", response_model=RuleOut, responses=error_responses(404, 409, 422))
async def replace_rule(name: str, rule: RuleConfig, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    _refuse_config_rule(name, settings)
    if rule.name != name:
        raise HTTPException(422, f"the body names rule {rule.name!r} but the path {name!r}; rules cannot be renamed")
    if await store.get_api_rule(name) is None:
        raise HTTPException(404, f"no API rule named {name!r}; POST /v1/rules creates one")
    _validated(rule, settings)
    await store.replace_api_rule(rule)
    await audit("rule.replace", name)
    return _api_rule(rule)


@router.delete("/{name}", status_code=204, response_class=Response, responses=error_responses(404, 409))
async def delete_rule(name: str, settings: SettingsDep, store: StoreDep, audit: AuditDep):
    _refuse_config_rule(name, settings)
    if not await store.delete_api_rule(name):
        raise HTTPException(404, f"no API rule named {name!r}")
    await audit("rule.delete", name)
    return Response(status_code=204)
