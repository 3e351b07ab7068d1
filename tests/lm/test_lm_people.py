"""The fictitious-people generator: seeded, unique, every fact rendered, perturbed answers of the same type."""

import pytest

from obliviate.lm import ATTRIBUTES, People


def test_people_are_seeded_unique_and_fictitious():
    a, b = People.generate(200, seed=1, canaries=5), People.generate(200, seed=1, canaries=5)
    assert a.people == b.people and a.canaries == b.canaries
    assert People.generate(200, seed=2).people != a.people
    assert len({p.name for p in a.people}) == 200 and len({p.secret for p in a.people}) == 200
    assert all(p.phone.startswith("+1-555-") and p.email.endswith(".example") for p in a.people)
    assert len(set(a.canaries)) == 5 and all(c.startswith("canary ") for c in a.canaries)


def test_biography_and_qa_cover_every_fact():
    pop = People.generate(50, seed=0)
    p = pop.people[7]
    for variant in (0, 1):
        bio = pop.biography(p, variant=variant)
        assert all(v in bio for v in p.facts().values()) and p.name in bio
    assert pop.biography(p, variant=0) != pop.biography(p, variant=1)
    qa = pop.qa(p)
    assert [q.attribute for q in qa] == list(ATTRIBUTES)
    for q in qa:
        truth = getattr(p, q.attribute)
        assert truth in q.answer and truth in q.paraphrased and q.answer != q.paraphrased
        assert len(q.perturbed) == 3 and all(truth not in w for w in q.perturbed)
        # perturbed answers use other people's values of the same attribute
        others = {getattr(o, q.attribute) for o in pop.people if o.pid != p.pid}
        assert all(any(v in w for v in others) for w in q.perturbed)
    prompt, answer = pop.association(p)
    assert answer == p.name and p.name not in prompt and p.employer in prompt


def test_splits_are_disjoint_people():
    pop = People.generate(100, seed=0)
    forget, retain, held = pop.split(forget=0.1, heldout=0.2, seed=3)
    assert (len(forget), len(held), len(retain)) == (10, 20, 70)
    ids = [{p.pid for p in part} for part in (forget, retain, held)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(ValueError):
        pop.split(forget=0.6, heldout=0.5)
    with pytest.raises(ValueError):
        People.generate(0)
