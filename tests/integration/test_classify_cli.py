"""`lyssna classify`: the analysts' batch command, run as a user runs it."""

import json
import subprocess
import sys

import pytest

from tests.helpers.kafka_io import ROOT

pytestmark = pytest.mark.integration

LABELS = {"recruitment", "employer_branding", "internal_communication", "employee_satisfaction",
          "customer_satisfaction", "engagement"}


def test_batch_command_writes_one_line_per_input_line(tmp_path):
    config = tmp_path / "lyssna.yaml"
    config.write_text("organizations:\n  - name: Kvarnby Bank\n    aliases: [Kvarnbybanken, Kvarnby]\n")
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join([
        json.dumps({"id": "a", "text": "Kvarnbybanken söker 20 nya kundrådgivare i Malmö! Ansök senast 1/12 #jobb",
                    "author": "ignored"}),
        "this is not json",
        json.dumps({"id": "c", "text": "Kvarnbys app har krånglat i tre dagar och kundtjänst svarar inte. Bedrövligt."}),
        json.dumps({"id": "d"}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    result = subprocess.run([sys.executable, "-m", "lyssna.cli", "classify", "--config", str(config), str(posts),
                             "--output", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1, result.stderr  # two lines could not be classified
    assert "classified 2 posts, 2 lines with errors" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4
    a, bad, c, missing = rows
    assert a["id"] == "a" and a["orgs"] == ["Kvarnby Bank"] and "recruitment" in a["topics"]
    assert set(a["topic_scores"]) == LABELS and set(a["sentiment_scores"]) == {"positive", "neutral", "negative"}
    assert a["lang"] == "sv"
    assert bad == {"line": 2, "error": "invalid JSON at column 1: Expecting value"}
    assert c["sentiment"] == "negative" and "customer_satisfaction" in c["topics"]
    assert missing["line"] == 4 and "missing text" in missing["error"]


def test_stdin_and_a_bad_config_file(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "lyssna.cli", "classify", "-"], input='{"id": 1, "text": "Hej hej"}\n',
                        capture_output=True, text=True, cwd=ROOT, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == "1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("organisations: []\n")
    result = subprocess.run([sys.executable, "-m", "lyssna.cli", "classify", "--config", str(bad), "-"],
                            input="", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert f"{bad}:1: organisations" in result.stderr and "Fix:" in result.stderr
