"""The encoder reorders texts by token count for its batches; callers must not see that."""

import numpy as np
import pytest

from lyssna.classify.encoder import Encoder, bf16_supported
from lyssna.common.config import load_settings

pytestmark = pytest.mark.integration

TEXTS = [
    "Kvarnbybanken anställer 40 nya utvecklare i Umeå i höst, ansök senast fredag! #jobb",
    "ok",
    "Nordviks HR-chef svarade aldrig på mitt mejl efter intervjun. Tre veckor nu. Dålig stil.",
    "Great onboarding at Fjällhem, my manager had everything ready on day one 🙌",
    "Hvorfor svarer ingen på Brückners kundeservice? Ventet i 40 minutter i telefonkø i dag.",
    "Die Stimmung im Team bei Brückner ist seit der Umstrukturierung im Keller, alle suchen was Neues.",
    "hej",
    "Työpaikkailmoitus: Nordvik Energi hakee asentajia Ouluun. Hyvä palkka ja joustavat työajat.",
]


@pytest.fixture(scope="module", params=[
    "fp32", "int8", "auto",
    pytest.param("bf16", marks=pytest.mark.skipif(not bf16_supported(), reason="no AVX-512 BF16 or AMX on this CPU"))])
def encoder(request):
    return Encoder(load_settings(None, env={}).classify.model, precision=request.param, threads=2)


def test_rows_come_back_in_input_order(encoder):
    one_by_one = np.stack([encoder.embed([t])[0] for t in TEXTS])
    # batch_size 3 splits the texts into batches whose members differ from input order
    batched = encoder.embed(TEXTS, batch_size=3)
    assert batched.shape == (len(TEXTS), encoder.dim)
    cosine = (one_by_one * batched).sum(axis=1) / len(encoder.layers)
    # Padding to the batch's longest text changes bf16 rounding only; int8 scales
    # each batch's activations by its own range, so neighbours shift it a little more,
    # most for a two-letter post batched with long ones, and by how much depends on the
    # adapter's weights (the int8 path's held-out F1 against fp32's is in MODEL_CARD.md).
    # The order check below is what this test guards.
    assert cosine.min() > (0.985 if encoder.precision == "int8" else 0.999), cosine
    nearest = (batched @ one_by_one.T).argmax(axis=1)
    assert list(nearest) == list(range(len(TEXTS)))


def test_no_texts_gives_an_empty_matrix(encoder):
    assert encoder.embed([]).shape == (0, encoder.dim)
