"""A synthetic task stream: templated task families, deterministic by seed, no external data.

Each family is one stream task with several instruction phrasings; every instance draws its
phrasing at random, so a task holds several distinct instructions. In some families the phrasings
are paraphrases of one operation (``arithmetic``'s expression phrasings, ``parity``), in others they
name different operations on the same kind of input (``list-ops``: largest / first two / reverse),
so the instruction matters. Outputs are short (a word, a number or a short list) because tests run
a tiny model with greedy decoding, and instructions state the answer format ("Answer with
'positive' or 'negative'.", "Return only the number.").

Closed-label families (``sentiment``, ``parity``, ``yes-no-membership``) draw the label first, so
labels are balanced in expectation. Instances of a task are distinct; the test split is drawn first
(from its own random stream), then the training split excluding test instances, so the test set
depends only on the seed, the family and ``test_per_task``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional

from citune.types import Instance, Stream, Task, instance_uid
from citune.errors import InputError

Gen = Callable[[random.Random], tuple[str, str]]  # rng -> (input, output)


@dataclass(frozen=True)
class Family:
    name: str
    closed: bool  # a closed label set (classification) rather than free-form output
    phrasings: tuple[tuple[str, Gen], ...]  # (instruction, generator of (input, output))

    @property
    def instructions(self) -> list[str]:
        return [p for p, _ in self.phrasings]


FAMILIES: dict[str, Family] = {}


def _family(name: str, closed: bool, *phrasings: tuple[str, Gen]) -> None:
    FAMILIES[name] = Family(name, closed, tuple(phrasings))


def _fmt_list(xs) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]"


def _nums(rng: random.Random, lo: int = 3, hi: int = 5, top: int = 30, distinct: bool = True) -> list[int]:
    k = rng.randint(lo, hi)
    return rng.sample(range(top + 1), k) if distinct else [rng.randint(0, top) for _ in range(k)]


# ----------------------------------------------------------------------------- arithmetic
def _add(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"{a}, {b}", str(a + b)


def _sub(rng):
    a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
    return f"{a}, {b}", str(a - b)


def _expr(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    if rng.random() < 0.5:
        return f"{a} + {b}", str(a + b)
    a, b = max(a, b), min(a, b)
    return f"{a} - {b}", str(a - b)


def _mul(rng):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    return f"{a} x {b}", str(a * b)


_family(
    "arithmetic", False,
    ("Add the two numbers in the input. Return only the number.", _add),
    ("Subtract the second number from the first one. Answer with a single integer.", _sub),
    ("Compute the value of the arithmetic expression. Return only the result as a number.", _expr),
    ("Multiply the two numbers. Return only the product.", _mul),
)


# ----------------------------------------------------------------------------- list-ops
def _list_op(op):
    def gen(rng):
        xs = _nums(rng)
        return _fmt_list(xs), op(xs)
    return gen


_family(
    "list-ops", False,
    ("Return the largest number in the list. Answer with the number only.", _list_op(lambda xs: str(max(xs)))),
    ("Return the smallest number in the list. Answer with the number only.", _list_op(lambda xs: str(min(xs)))),
    ("Return the first 2 elements of the list, in the format [a, b].", _list_op(lambda xs: _fmt_list(xs[:2]))),
    ("Reverse the order of the list. Return the reversed list in the format [x, y, z].",
     _list_op(lambda xs: _fmt_list(xs[::-1]))),
)


# ----------------------------------------------------------------------------- string-ops
_CONS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_WORDS = ("apple", "river", "garden", "pencil", "window", "silver", "planet", "candle", "forest", "rocket",
          "yellow", "button", "dragon", "island", "jacket", "ladder", "marble", "needle", "orange", "pepper")


def _word(rng):
    if rng.random() < 0.3:
        return rng.choice(_WORDS)
    return "".join(rng.choice(_CONS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 3)))


def _str_op(op):
    def gen(rng):
        w = _word(rng)
        return w, op(w)
    return gen


_family(
    "string-ops", False,
    ("Reverse the letters of the word. Return only the reversed word.", _str_op(lambda w: w[::-1])),
    ("Write the word in upper case. Return only the word in capital letters.", _str_op(str.upper)),
    ("Count the number of letters in the word. Answer with a number.", _str_op(lambda w: str(len(w)))),
    ("Return the first letter of the word. Answer with a single letter.", _str_op(lambda w: w[0])),
)


# ----------------------------------------------------------------------------- sentiment
_NOUNS = ("movie", "food", "service", "hotel", "book", "concert", "staff", "room", "game", "phone",
          "trip", "coffee", "show", "meal", "class")
_POS = ("wonderful", "great", "excellent", "delightful", "amazing", "fantastic", "pleasant", "superb",
        "lovely", "brilliant", "enjoyable", "charming")
_NEG = ("terrible", "awful", "boring", "disappointing", "horrible", "dreadful", "poor", "bland",
        "annoying", "mediocre", "miserable", "unpleasant")
_SENT_TEMPLATES = ("The {n} was {a}.", "I found the {n} {a}.", "What a {a} {n}!", "Honestly, the {n} felt {a}.",
                   "Our {n} was really {a}.", "The {n} was {a} and the {m} was {b}.")


def _sentiment(rng):
    label = rng.choice(("positive", "negative"))
    adjs = _POS if label == "positive" else _NEG
    n, m = rng.sample(_NOUNS, 2)
    a, b = rng.sample(adjs, 2)
    return rng.choice(_SENT_TEMPLATES).format(n=n, m=m, a=a, b=b), label


_family(
    "sentiment", True,
    ("Classify the sentiment of the review. Answer with 'positive' or 'negative'.", _sentiment),
    ("Is the following sentence positive or negative? Answer with 'positive' or 'negative' only.", _sentiment),
    ("Decide whether the opinion expressed in the text is positive or negative. "
     "Reply with one word: positive or negative.", _sentiment),
)


# ----------------------------------------------------------------------------- date-format
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def _date_op(op):
    def gen(rng):
        y, m, d = rng.randint(1990, 2030), rng.randint(1, 12), rng.randint(1, 28)
        return f"{y:04d}-{m:02d}-{d:02d}", op(y, m, d)
    return gen


_family(
    "date-format", False,
    ("Convert the date from YYYY-MM-DD to the format 'Month D, YYYY'. Return only the converted date.",
     _date_op(lambda y, m, d: f"{_MONTHS[m - 1]} {d}, {y}")),
    ("Rewrite the date in the format DD/MM/YYYY. Return only the date.",
     _date_op(lambda y, m, d: f"{d:02d}/{m:02d}/{y:04d}")),
    ("Which month is the date in? Answer with the month name only.", _date_op(lambda y, m, d: _MONTHS[m - 1])),
    ("Return the year of the date. Answer with the four-digit year only.", _date_op(lambda y, m, d: str(y))),
)


# ----------------------------------------------------------------------------- unit-conversion
def _unit(unit: str, factor: int, top: int):
    def gen(rng):
        v = rng.randint(1, top)
        if rng.random() < 0.25:
            v2 = v + 0.5
            return f"{v2} {unit}", str(int(v2 * factor))
        return f"{v} {unit}", str(v * factor)
    return gen


_family(
    "unit-conversion", False,
    ("Convert the distance from kilometers to meters. Return only the number.", _unit("km", 1000, 60)),
    ("Convert the time from hours to minutes. Return only the number of minutes.", _unit("hours", 60, 48)),
    ("Convert the weight from kilograms to grams. Answer with the number only.", _unit("kg", 1000, 60)),
    ("Convert the length from meters to centimeters. Return only the number.", _unit("m", 100, 90)),
)


# ----------------------------------------------------------------------------- entity-extraction
_PEOPLE = ("Anna", "Carlos", "Mei", "Omar", "Sofia", "James", "Priya", "Lukas", "Amara", "Kenji", "Elena",
           "David", "Fatima", "Noah", "Ingrid", "Mateo", "Yuki", "Grace", "Ravi", "Olga")
_CITIES = ("Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Toronto", "Madrid", "Nairobi", "Seoul", "Dublin",
           "Berlin", "Sydney", "Chicago", "Mumbai", "Prague", "Lisbon", "Denver", "Hanoi", "Vienna", "Quito")
_ENT_TEMPLATES = ("{p} moved to {c} in {y}.", "In {y}, {p} visited {c} for the first time.",
                  "{p} was born in {c} in {y}.", "{p} opened a small bakery in {c} in {y}.",
                  "The conference in {c} in {y} was organised by {p}.")


def _entity(pick):
    def gen(rng):
        p, c, y = rng.choice(_PEOPLE), rng.choice(_CITIES), rng.randint(1950, 2024)
        return rng.choice(_ENT_TEMPLATES).format(p=p, c=c, y=y), pick(p, c, y)
    return gen


_family(
    "entity-extraction", False,
    ("Extract the name of the city mentioned in the sentence. Return only the city name.",
     _entity(lambda p, c, y: c)),
    ("Who is the person mentioned in the sentence? Answer with the person's name only.",
     _entity(lambda p, c, y: p)),
    ("Extract the year mentioned in the sentence. Return only the year.", _entity(lambda p, c, y: str(y))),
)


# ----------------------------------------------------------------------------- parity
def _parity(rng):
    label = rng.choice(("even", "odd"))
    n = 2 * rng.randint(0, 4999) + (label == "odd")
    return str(n), label


_family(
    "parity", True,
    ("Is the number even or odd? Answer with 'even' or 'odd'.", _parity),
    ("Decide whether the given integer is even or odd. Reply with one word: even or odd.", _parity),
    ("Classify the number as even or odd. Answer with 'even' or 'odd' only.", _parity),
)


# ----------------------------------------------------------------------------- yes-no-membership
_ITEMS = ("apple", "pear", "plum", "kiwi", "grape", "lemon", "mango", "peach", "cherry", "melon", "fig", "lime")


def _membership(rng):
    label = rng.choice(("yes", "no"))
    pool = list(_ITEMS) if rng.random() < 0.4 else list(range(51))
    chosen = rng.sample(pool, rng.randint(4, 6))
    xs, item = chosen[:-1], chosen[-1]
    if label == "yes":
        item = rng.choice(xs)
    return f"List: {_fmt_list(xs)}\nItem: {item}", label


_family(
    "yes-no-membership", True,
    ("Is the item in the list? Answer with 'yes' or 'no'.", _membership),
    ("Check whether the given item appears in the list. Reply with one word: yes or no.", _membership),
    ("Does the list contain the item? Answer 'yes' or 'no' only.", _membership),
)


# ----------------------------------------------------------------------------- sorting
def _sort_nums(reverse: bool):
    def gen(rng):
        xs = _nums(rng, 3, 5, 50)
        return _fmt_list(xs), _fmt_list(sorted(xs, reverse=reverse))
    return gen


def _sort_words(rng):
    ws = rng.sample(_ITEMS + _WORDS, rng.randint(3, 4))
    return ", ".join(ws), ", ".join(sorted(ws))


_family(
    "sorting", False,
    ("Sort the numbers in ascending order. Return them in the format [a, b, c].", _sort_nums(False)),
    ("Sort the numbers from largest to smallest. Return the sorted list in the format [a, b, c].",
     _sort_nums(True)),
    ("Sort the words in alphabetical order. Return them separated by commas.", _sort_words),
)


# ----------------------------------------------------------------------------- generation
def family_names() -> list[str]:
    return list(FAMILIES)


def get_family(name: str, where: Optional[str] = None) -> Family:
    if name not in FAMILIES:
        raise InputError(f"unknown synthetic family '{name}' (known: {', '.join(FAMILIES)})", "config", where)
    return FAMILIES[name]


def _draw(fam: Family, n: int, rng: random.Random, seen: set, where: Optional[str]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n + 1000:
            raise InputError(f"synthetic family '{fam.name}' cannot produce {n} distinct instances "
                             f"(got {len(out)}); ask for fewer", "config", where)
        ins, gen = fam.phrasings[rng.randrange(len(fam.phrasings))]
        inp, outp = gen(rng)
        key = (ins, inp, outp)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def generate(family: str, n: int, seed: int = 0, split: str = "train", exclude: Optional[set] = None,
             where: Optional[str] = None) -> list[Instance]:
    """`n` distinct instances of a family (none of them in `exclude`, a set of (ins, input, output)),
    deterministic in (seed, family, split)."""
    fam = get_family(family, where)
    rng = random.Random(f"citune-synthetic\x1f{seed}\x1f{family}\x1f{split}")
    seen = set(exclude) if exclude else set()
    source = f"synthetic:{family}"
    return [Instance(i, x, (o,), task=family, source=source, uid=instance_uid(i, x, (o,), source))
            for i, x, o in _draw(fam, n, rng, seen, where)]


def synthetic_task(family: str, train: int, test: int, seed: int = 0, heldout: bool = False,
                   where: Optional[str] = None) -> Task:
    """One task: `test` test instances, then `train` distinct training instances (none for held-out)."""
    get_family(family, where)
    test_x = generate(family, test, seed, "test", where=where)
    seen = {(x.instruction, x.input, x.output) for x in test_x}
    train_x = [] if heldout else generate(family, train, seed, "train", exclude=seen, where=where)
    return Task(family, train_x, test_x)


def synthetic_stream(families: list[str], heldout_families: list[str], train_per_task: int,
                     test_per_task: int, seed: int = 0) -> Stream:
    for key, names in (("families", families), ("heldout_families", heldout_families)):
        for i, name in enumerate(names):
            get_family(name, f"data.synthetic.{key}[{i}]")
    tasks = [synthetic_task(f, train_per_task, test_per_task, seed, where=f"data.synthetic.families[{i}]")
             for i, f in enumerate(families)]
    held = [synthetic_task(f, 0, test_per_task, seed, heldout=True, where=f"data.synthetic.heldout_families[{i}]")
            for i, f in enumerate(heldout_families)]
    return Stream(tasks, held)
