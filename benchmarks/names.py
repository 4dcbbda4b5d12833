"""Random but realistic blocklist files: ad, tracker and site host names, one per line."""

from __future__ import annotations

import random
from pathlib import Path

_SYLLABLES = ("ad", "ba", "click", "co", "da", "el", "fi", "go", "ha", "in", "jo", "ka", "lo",
              "max", "me", "net", "no", "pi", "pro", "qu", "ra", "sa", "stat", "ti", "tra",
              "up", "vi", "web", "xo", "yu", "ze", "zo", "track", "media", "cdn", "pix")
_SUBDOMAINS = ("", "", "", "www", "ads", "cdn", "api", "static", "metrics", "pixel", "t",
               "track", "img", "m", "analytics", "eu", "us-east-1", "srv01", "edge-3")
_TOP_LEVELS = ("com", "com", "com", "com", "net", "org", "io", "de", "fr", "ru", "info", "co.uk",
               "com.br", "xyz", "top", "online", "cn", "jp", "nl", "pl")
# Real lists repeat names and mix case; detoxd and the floor must both lower-case and dedupe.
DUPLICATE_SHARE = 0.02
UPPER_SHARE = 0.01


def _label(rng: random.Random) -> str:
    word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))
    if rng.random() < 0.3:
        word += str(rng.randint(0, 999))
    if rng.random() < 0.15:
        word += "-" + rng.choice(_SYLLABLES)
    return word


def random_name(rng: random.Random) -> str:
    parts = [_label(rng), rng.choice(_TOP_LEVELS)]
    subdomain = rng.choice(_SUBDOMAINS)
    if subdomain:
        parts.insert(0, subdomain)
    return ".".join(parts)


def write_list(path: Path, count: int, seed: int = 1) -> int:
    """Write about ``count`` lines (a comment header, duplicates, some upper case) to ``path``;
    returns the number of distinct lower-case names in it."""
    rng = random.Random(seed)
    names: list[str] = []
    distinct: set[str] = set()
    while len(names) < count:
        if names and rng.random() < DUPLICATE_SHARE:
            name = rng.choice(names)
        else:
            name = random_name(rng)
            if rng.random() < UPPER_SHARE:
                name = name.upper()
        names.append(name)
        distinct.add(name.lower())
    header = f"# benchmark list: {count} entries, seed {seed}\n"
    path.write_text(header + "\n".join(names) + "\n")
    path.chmod(0o644)
    return len(distinct)
