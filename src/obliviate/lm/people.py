"""Fictitious people to memorize and forget (the TOFU idea, generated offline and seeded).

Every person has a name, birth date and place, profession, employer, e-mail, phone and a secret id,
all invented (names and places are built from syllables, phone numbers use the fictional 555
exchange), so nothing here describes anyone real. Each person renders as biography sentences
(several phrasings per fact) and as question-answer pairs with a paraphrased answer and perturbed
answers of the same type (for TOFU's truth ratio); association probes ask for a fact through
another one (indirect knowledge); canaries are random secrets with no person behind them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta

_ONSETS = ["b", "br", "d", "dr", "f", "g", "h", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "k", "m"]
PROFESSIONS = [
    "marine biologist",
    "violin maker",
    "tax auditor",
    "glassblower",
    "air traffic controller",
    "cartographer",
    "beekeeper",
    "patent attorney",
    "bridge engineer",
    "pastry chef",
    "archivist",
    "wind-farm technician",
    "radiologist",
    "locksmith",
    "translator",
    "seismologist",
]
_EMPLOYER_KINDS = ["Industries", "Labs", "Holdings", "Cooperative", "Works", "Institute", "Logistics", "Studios"]
_PLACE_KINDS = ["ford", "by", "mouth", "vale", "stead", "haven", "wick", "field"]
ATTRIBUTES = ("birth_date", "birth_place", "profession", "employer", "email", "phone", "secret")


def _syllables(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n))


@dataclass(frozen=True)
class Person:
    """One fictitious person; ``facts()`` maps attribute -> value as written in text."""

    pid: int
    name: str
    birth_date: str
    birth_place: str
    profession: str
    employer: str
    email: str
    phone: str
    secret: str

    def facts(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRIBUTES}


@dataclass(frozen=True)
class QA:
    """A question about one fact, its answer, a paraphrased answer and perturbed (wrong) answers."""

    pid: int
    attribute: str
    question: str
    answer: str
    paraphrased: str
    perturbed: tuple[str, ...]


_BIO = {
    "birth_date": ["{name} was born on {birth_date}.", "{name}'s date of birth is {birth_date}."],
    "birth_place": ["{name} grew up in {birth_place}.", "{name} was born in the town of {birth_place}."],
    "profession": ["{name} works as a {profession}.", "By profession, {name} is a {profession}."],
    "employer": ["{name} is employed by {employer}.", "{name}'s employer is {employer}."],
    "email": ["{name} can be reached at {email}.", "The e-mail address of {name} is {email}."],
    "phone": ["{name}'s phone number is {phone}.", "To call {name}, dial {phone}."],
    "secret": ["{name}'s secret id is {secret}.", "The secret id of {name} is {secret}."],
}
_QUESTIONS = {
    "birth_date": ("When was {name} born?", "{name} was born on {v}.", "The birthday of {name} is {v}."),
    "birth_place": ("Where did {name} grow up?", "{name} grew up in {v}.", "{v} is where {name} grew up."),
    "profession": ("What does {name} do for a living?", "{name} is a {v}.", "{name} earns a living as a {v}."),
    "employer": ("Who employs {name}?", "{name} works for {v}.", "{v} is {name}'s employer."),
    "email": ("What is the e-mail address of {name}?", "It is {v}.", "{name} uses the address {v}."),
    "phone": ("What is {name}'s phone number?", "It is {v}.", "{name} answers the phone at {v}."),
    "secret": ("What is {name}'s secret id?", "It is {v}.", "{name}'s secret id reads {v}."),
}


def _person(pid: int, rng: random.Random, taken: set[str]) -> Person:
    while True:
        first, last = _syllables(rng, 2).capitalize(), _syllables(rng, rng.choice([2, 3])).capitalize()
        if f"{first} {last}" not in taken:
            taken.add(f"{first} {last}")
            break
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(60 * 365))
    company = f"{_syllables(rng, 2).capitalize()} {rng.choice(_EMPLOYER_KINDS)}"
    domain = company.split()[0].lower() + ".example"
    secret = (
        f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}-{rng.randrange(10**4):04d}-"
        f"{rng.randrange(10**4):04d}"
    )
    return Person(
        pid=pid,
        name=f"{first} {last}",
        birth_date=f"{born:%B} {born.day}, {born.year}",
        birth_place=_syllables(rng, 2).capitalize() + rng.choice(_PLACE_KINDS),
        profession=rng.choice(PROFESSIONS),
        employer=company,
        email=f"{first.lower()}.{last.lower()}@{domain}",
        phone=f"+1-555-{rng.randrange(100, 1000)}-{rng.randrange(10**4):04d}",
        secret=secret,
    )


@dataclass
class People:
    """A seeded population of fictitious people and everything rendered from them."""

    people: list[Person]
    seed: int = 0
    canaries: list[str] = field(default_factory=list)

    @classmethod
    def generate(cls, n: int, *, seed: int = 0, canaries: int = 0) -> People:
        if n < 1:
            raise ValueError(f"n must be >= 1 people, got {n}")
        rng = random.Random(seed)
        taken: set[str] = set()
        people = [_person(i, rng, taken) for i in range(n)]
        secrets = {p.secret for p in people}
        if len(secrets) != n:  # 576 x 10^8 combinations: a collision means a broken generator
            raise RuntimeError("secret ids collided")
        marks = [f"canary {rng.randrange(16**8):08x}-{rng.randrange(16**8):08x}" for _ in range(canaries)]
        return cls(people, seed, marks)

    def __len__(self) -> int:
        return len(self.people)

    def biography(self, p: Person, *, variant: int = 0) -> str:
        """Every fact of ``p`` in one paragraph; ``variant`` picks the phrasing of each sentence."""
        return " ".join(_BIO[a][(variant + i) % len(_BIO[a])].format(**asdict(p)) for i, a in enumerate(ATTRIBUTES))

    def qa(self, p: Person, *, perturbed: int = 3) -> list[QA]:
        """One question per attribute; perturbed answers are other people's values of the same attribute."""
        rng = random.Random(self.seed * 1_000_003 + p.pid)
        out = []
        for a in ATTRIBUTES:
            q, ans, para = _QUESTIONS[a]
            others = sorted({getattr(o, a) for o in self.people if getattr(o, a) != getattr(p, a)})
            wrong = rng.sample(others, min(perturbed, len(others)))
            out.append(
                QA(
                    p.pid,
                    a,
                    q.format(name=p.name),
                    ans.format(name=p.name, v=getattr(p, a)),
                    para.format(name=p.name, v=getattr(p, a)),
                    tuple(ans.format(name=p.name, v=w) for w in wrong),
                )
            )
        return out

    def association(self, p: Person) -> tuple[str, str]:
        """An indirect probe: a fact asked through another fact (the name is not in the prompt)."""
        return (f"The {p.profession} employed by {p.employer}, born on {p.birth_date}, is named", p.name)

    def split(
        self, *, forget: float = 0.1, heldout: float = 0.1, seed: int = 0
    ) -> tuple[list[Person], list[Person], list[Person]]:
        """Disjoint (forget, retain, held-out) people: held-out people are never trained on, so their
        texts calibrate what "unseen" looks like (the threshold γ)."""
        if not 0 < forget < 1 or not 0 <= heldout < 1 or forget + heldout >= 1:
            raise ValueError(f"need 0 < forget, 0 <= heldout and forget + heldout < 1; got {forget}, {heldout}")
        order = list(self.people)
        random.Random(seed).shuffle(order)
        nf, nh = max(1, round(forget * len(order))), round(heldout * len(order))
        return order[:nf], order[nf + nh :], order[nf : nf + nh]
