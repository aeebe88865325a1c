"""More words for the training captions (`data.captions = "augmented"`), drawn from WordNet 3.0.

A text-to-image model trained on three names per class learns those names; the hope of augmentation is that a
model trained on many names of a thing learns to read the sentence encoder's meaning rather than its tokens, and so
follows wordings it never saw. The words here were taken from WordNet 3.0 (Princeton University; Debian's
`wordnet-base`, /usr/share/wordnet/data.noun and data.adj), read once when this table was written, so nothing is
needed at run time:

- class names: the lemmas of one or more synsets per class and of their hyponyms three levels down
  (`scripts/wordnet_candidates.py` prints them: e.g. 04489008 "trouser, pant" gives breeches, corduroys, slacks,
  ...), then curated by hand: archaic, ambiguous or cross-class lemmas dropped ("talaria", "sack", "jumper" under
  dress; T-shirt and tank top go to class 0, not to shirt), shorts dropped from trousers (Fashion-MNIST's are long);
- shade and size words: lemmas of the colour and extent senses of WordNet's adjectives (dark 00409440 / 00273082,
  grey 00389310, light 00408660, narrow 02561889, wide 00106277 / 01384212) and their similar-to sets;
- templates: new sentence shapes, written for this table.

What keeps the held-out figures honest: no word here (up to a plural "s") occurs in the held-out caption vocabulary
or in the user prompts (`data.user_prompts`) unless the seen vocabulary already has it; tests/test_text.py
checks it. So "parka", "cardigan", "jeans", "tote", "sundress", "pale" stay words the model never trained on. The
held-out figures were not used to choose anything here.

WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. Permission to use, copy, modify and
distribute this database for any purpose and without fee or royalty is granted, provided the copyright notice and
these statements appear on all copies. THIS DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO
REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. The name of Princeton University may not be used in advertising
or publicity pertaining to distribution of the database.
"""

from __future__ import annotations

__all__ = ["CLASS_WORDS", "SHADE_WORDS", "SIZE_WORDS", "EXTRA_TEMPLATES"]

CLASS_WORDS = {  # beyond captions.SYNONYMS' seen names
    0: ("tee shirt", "jersey", "tank top", "halter", "bustier"),
    1: ("trouser", "pant", "bell-bottoms", "bellbottom trousers", "breeches", "knickerbockers", "corduroys", "cords",
        "jodhpurs", "riding breeches", "pedal pushers", "toreador pants", "salwar", "stretch pants",
        "trews", "Levi's"),
    2: ("slipover",),
    3: ("caftan", "kaftan", "chemise", "coatdress", "dirndl", "bridal gown", "dinner dress", "tea gown", "pinafore",
        "kirtle", "muumuu", "shirtdress", "sari"),
    4: ("greatcoat", "topcoat", "duffel coat", "frock coat", "fur coat", "mink coat", "sheepskin coat", "hooded coat",
        "chesterfield", "ulster", "blazer", "bomber jacket", "bush jacket", "donkey jacket", "double-breasted jacket",
        "single-breasted jacket", "lumber jacket", "Norfolk jacket", "windbreaker", "windcheater", "cagoule",
        "pea jacket", "mackinaw", "mackintosh", "Burberry", "oilskin", "slicker", "lab coat", "box coat",
        "morning coat", "bolero"),
    5: ("espadrille", "huarache", "zori", "scuffer"),
    6: ("polo shirt", "shirtwaist", "kurta", "dashiki", "middy blouse", "camise"),
    7: ("plimsoll", "cleats"),
    8: ("pocketbook", "reticule", "holdall"),
    9: ("desert boot", "half boot", "top boot", "jackboot", "Wellington boot", "hip boot", "thigh boot", "riding boot",
        "jodhpur boot", "rubber boot", "gum boot", "chukka boot", "congress boot"),
}

SHADE_WORDS = {0: ("darkish", "dusky", "pitch-black"), 1: ("greyish", "gray", "grayish", "neutral"),
               2: ("pastel", "whitish", "snowy")}
SIZE_WORDS = {0: ("slender", "tapered", "lean"), 1: ("medium", "ordinary", "moderate"),
              2: ("full", "ample", "roomy", "spacious")}

EXTRA_TEMPLATES = ("{shade} {item}", "{size} {shade} {item}", "a {shade}, {size} {item}", "{item} in {shade}",
                   "photo of a {item}, {size} and {shade}", "one {shade} {item}", "an image: {item}, {shade}",
                   "{size}, {shade} {item}")
