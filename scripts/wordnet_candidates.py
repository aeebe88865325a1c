"""Print the WordNet 3.0 lemmas that `difflab/data/thesaurus.py` was curated from: for each Fashion-MNIST class, the
lemmas of its root synsets and of their hyponyms three levels down, each marked when one of its words (up to a
plural "s") is a word of the held-out captions or of the user prompts that the seen captions lack (such a lemma is
never taken: it would leak the test wording into training).

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb /tmp/wn
    python scripts/wordnet_candidates.py /tmp/wn/usr/share/wordnet/data.noun

Reads the database file directly (its format: `man 5 wndb`); nltk refuses a corpus outside its data folders.
"""

from __future__ import annotations

import re
import sys

from difflab.data.captions import SHADES, SIZES, SYNONYMS, TEMPLATES
from difflab.data.user_prompts import USER_PROMPTS

ROOTS = {0: ("03595614", "04390577", "04453666"), 1: ("04489008",), 2: ("04370048",), 3: ("03236735",), 4: ("03057021",),
         5: ("04133789",), 6: ("04197391", "02854926"), 7: ("03472535", "04120489", "03041449"), 8: ("02774152", "02970408"),
         9: ("02872752", "03027625", "03090710")}


def words(text: str) -> set:
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in re.findall(r"[a-z]+", text.lower())}


def read(path: str) -> dict:
    """offset -> (lemmas, [(pointer symbol, offset)])."""
    out = {}
    for line in open(path, encoding="utf-8"):
        if line.startswith("  "):  # the licence header
            continue
        f = line.partition(" | ")[0].split()
        n = int(f[3], 16)
        k = 4 + 2 * n
        out[f[0]] = ([w.replace("_", " ") for w in f[4:k:2]],
                     [(f[k + 1 + 4 * i], f[k + 2 + 4 * i]) for i in range(int(f[k])) if f[k + 3 + 4 * i] == "n"])
    return out


def hyponyms(db: dict, offset: str, depth: int = 3) -> list:
    out = []
    for symbol, q in db[offset][1]:
        if symbol in ("~", "~i"):
            out += [q] + (hyponyms(db, q, depth - 1) if depth > 1 else [])
    return out


def main(path: str) -> None:
    seen, tested = set(), set()
    for table in (SYNONYMS, SHADES, SIZES):
        for v in table.values():
            seen |= set().union(*(words(w) for w in v[0]))
            tested |= set().union(*(words(w) for w in v[1]))
    seen |= set().union(*(words(t) for t in TEMPLATES[0]))
    tested |= set().union(*(words(t) for t in TEMPLATES[1])) | set().union(*(words(p[0]) for p in USER_PROMPTS))
    leak = tested - seen
    db = read(path)
    for label, roots in ROOTS.items():
        lemmas = dict.fromkeys(w for r in roots for o in (r, *hyponyms(db, r)) for w in db[o][0])
        print(label, SYNONYMS[label][0][0])
        print("   ", "; ".join(w + (" [held-out word]" if words(w) & leak else "") for w in lemmas))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wordnet/data.noun")
