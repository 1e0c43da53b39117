"""Words that are often also the one-word name of an organization: common first
names, pets' names, places and everyday words in the six languages (folded like
names: lower case, no diacritics). A watched one-word name on this list that is
not marked ``ambiguous`` gets a warning at start (relevance.ambiguity_hints):
posts about the person, the dog or the village would otherwise count.

Deliberately short and common: a hint, not a decision; the organization's owner
knows whether the name is ambiguous where their posts come from.
"""

from __future__ import annotations

_FIRST_NAMES = """
alva alice astrid elsa ella ebba freja frida ida ines iris julia klara lea lilly linnea maja molly nora olivia
saga selma signe stella vera wilma alma agnes edith ellen emma hanna ingrid karin kerstin lena maria sara
anna eva liv sofie ida mette sanna aino helmi kuura venla aada lumi siiri hilla ilona kerttu
malte noah oscar hugo liam lucas william elias leo alfred arvid axel charlie edvin erik filip gustav harry
isak ivar jack loke ludvig melvin nils olle otto sixten theo valter vincent viggo adam albin anton carl
emil frans henrik johan jonas karl lars magnus mats nils oskar per peter sven tor ulf viktor mikkel rasmus
jens kasper soren ole jesper morten aksel eino leevi onni vaino veeti lauri otso kai jan max paul felix
ben finn jonas lukas luca tim tom
""".split()
_PETS_AND_CHARACTERS = """
pluto bamse bella luna milo rocky simba nala sessan tussi fido rex lassie kalle molly charlie lucky
""".split()
_PLACES = """
lund mora ekeby berg dal vik strand holm nas hagen sund salo kallio
""".split()
_WORDS = """
gnista kuura apple amazon shell orange target delta mercury polaris nova stella vinter sommar var host
sol mane stjarna eld vatten skog fjall hav bris ljus lampa hem huset bo bygg kraft energi
""".split()

COMMON_NAMES: frozenset[str] = frozenset(_FIRST_NAMES + _PETS_AND_CHARACTERS + _PLACES + _WORDS)
