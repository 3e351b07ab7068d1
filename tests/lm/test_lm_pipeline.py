"""Language models through the same pipeline as classifiers: ``ob.datasets.load("people")`` is a
TextData, ``ob.Recipe.default_for`` / ``ob.train`` train the tiny GPT (equal to the old ``lm`` path),
``ob.evaluate`` returns the per-sequence rows with oracle, gap and floor, and ``ob.tune`` selects by
the catalogue's direction. A 1 x 32 GPT on 12 people, ~30 s in all."""

import functools

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

import obliviate as ob  # noqa: E402
from obliviate.evaluation import sequence_scores  # noqa: E402
from obliviate.evaluation.oracles import floor_seed  # noqa: E402
from obliviate.lm.scenario import make_scenario  # noqa: E402
from obliviate.metrics.lm import calibrate_threshold, lm_mia, privleak  # noqa: E402

SCENARIO = dict(n_people=12, forget=3, heldout=3, canaries=4, background_chars=40_000, vocab_size=1500, length=80)


@functools.lru_cache(maxsize=1)
def _setup():
    data = ob.datasets.load("people", val_fraction=0.5, **SCENARIO)
    base = ob.Recipe.default_for(data)
    recipe = base.replace(
        arch_kwargs={**base.arch_kwargs, "layers": 1, "width": 32, "heads": 2}, steps=120, batch_size=16
    )
    split = data.forget_split()
    retain = split.retain_set(data.train)
    original = ob.train(recipe, data.train, seed=0, progress=False)
    oracles = [ob.train(recipe, retain, seed=s, progress=False) for s in (0, floor_seed(0))]
    return data, recipe, split, original, oracles


def test_people_is_text_data_with_the_scenarios_sets():
    data, recipe, split, *_ = _setup()
    sc = make_scenario(**SCENARIO)
    assert "people" in ob.datasets.available() and isinstance(data, ob.datasets.TextData)
    assert torch.equal(split.forget_ids, sc.split.forget_ids) and torch.equal(data.train.ids, sc.train.ids)
    # test and val partition the never-trained rows (held-out people and never-inserted canaries)
    assert sorted(data.test.texts + data.val.texts) == sorted(sc.heldout.texts)
    assert not set(data.test.texts) & set(sc.train.texts)
    kinds = ("secret", "qa", "assoc", "paraphrase")
    assert set(data.probes) == {f"{k}_{who}" for k in kinds for who in ("forget", "retain")}
    assert len(data.qa[1]) == 3 and (data.groups[split.forget_ids.numpy()] >= -1).all()
    assert set(data.groups[split.forget_ids.numpy()]) - {-1} == {p.pid for p in sc.forget_people}
    assert recipe.architecture == "tiny-gpt2" and recipe.num_classes == len(data.tokenizer)
    mine = ob.datasets.from_texts(["my first text.", "my second text."], ["an unseen text."], data.tokenizer, 16)
    assert mine.test.texts == ["an unseen text."] and ob.Recipe.default_for(mine).input_shape == (16,)
    with pytest.raises(ValueError, match="defines no forget set"):
        mine.forget_split()
    # load's seed is the scenario's seed too (it used to seed only the validation split)
    other = ob.datasets.load("people", seed=1, **SCENARIO)
    assert other.train.texts == make_scenario(**SCENARIO, seed=1).train.texts != sc.train.texts


def test_paraphrase_probe_asks_for_the_secret_in_words_never_trained():
    """Three reworded prompts per person, each scored on the person's secret, none in any training row
    (while the trained secret prompt is): extraction here is knowledge, not a memorized path."""
    from obliviate.lm.scenario import PARAPHRASES

    sc = make_scenario(**SCENARIO)
    people = sc.forget_people
    probe = sc.paraphrase_probe(people)
    assert len(probe) == len(PARAPHRASES) * len(people)
    trained = "\n".join(sc.train.texts)
    assert all(f"{p.name}'s secret id is {p.secret}" in trained for p in people)
    for p in people:
        for t in PARAPHRASES:
            assert t.format(name=p.name) not in trained
    texts = probe.texts
    assert all(any(t.endswith(" " + p.secret) and p.name in t for t in texts) for p in people)


def test_recipe_path_trains_the_same_model_as_the_lm_path():
    from obliviate.lm.train import train as lm_train
    from obliviate.models import tiny_gpt2

    data, recipe, *_ = _setup()
    short = recipe.replace(steps=15)
    new = ob.train(short, data.train, seed=3, progress=False)
    old = tiny_gpt2(
        len(data.tokenizer), layers=1, width=32, heads=2, context=80, seed=3, eos_token_id=data.tokenizer.eos_token_id
    )
    lm_train(old, data.train, steps=15, batch_size=16, lr=recipe.lr, seed=3, progress=False)
    for (k, a), b in zip(new.state_dict().items(), old.state_dict().values()):
        assert torch.equal(a, b), k
    assert ob.models.log.training_log(new).recipe["steps"] == 15


def test_evaluate_lm_rows_against_the_oracle_and_floor():
    data, recipe, split, original, (oracle, oracle_b) = _setup()
    report = ob.evaluate(original, data, split, oracle=[oracle, oracle_b], original=original)
    rows = set(ob.evaluation.DEFAULT_LM_METRICS) | {f"extraction_{p}" for p in data.probes}
    assert rows == set(report)
    frame = report.to_frame().set_index("metric")
    assert frame.loc[list(rows), ["value", "gap", "floor"]].notna().all().all()
    # the original memorized its forget set: its gap to the oracle is far above two oracles' gap
    assert report.gap("forget_ma") > 3 * report.floor["forget_ma"] and report["forget_ma"] > report.oracle["forget_ma"]
    assert report["ppl_change"] == pytest.approx(0.0, abs=1e-9)
    assert report.gap("avg_gap_ma") > report.floor["avg_gap_ma"]
    # c(γ) of the oracle is counted with γ from the *original*'s scores on the never-trained rows
    held = sequence_scores(original, data.test).ma
    f_oracle = sequence_scores(oracle, split.forget_set(data.train))
    assert report.oracle["c_gamma_max"] == float((f_oracle.ma > calibrate_threshold(held, "max")).sum())
    assert report.oracle["c_gamma_mean"] == float((f_oracle.ma > held.mean()).sum())
    # PrivLeak compares the model's Min-K% AUC with the oracle's, in MUSE's orientation
    t_oracle = sequence_scores(oracle, data.test)
    auc_oracle = lm_mia(f_oracle.min_k40, t_oracle.min_k40)["auc"]
    assert report["privleak"] == pytest.approx(privleak(report["mia_auc_mink"], auc_oracle))
    assert report.gap("privleak") == abs(report["privleak"])
    assert report.gap("forget_quality") == 1 - report["forget_quality"]
    # without the original, the rows relative to it are absent, and asking for them is an error
    plain = ob.evaluate(original, data, split, oracle=oracle)
    assert "c_gamma_max" not in plain and "ppl_change" not in plain and plain["forget_ma"] == report["forget_ma"]
    with pytest.raises(ValueError, match="pass original="):
        ob.evaluate(original, data, split, metrics=["c_gamma_max"])
    with pytest.raises(ValueError, match="unknown metrics"):
        ob.evaluate(original, data, split, metrics=["forget_acc"])


def test_tune_lm_reads_direction_from_the_catalogue():
    data, recipe, split, original, _ = _setup()
    res = ob.tune(
        "ga",
        data,
        split,
        original=original,
        recipe=recipe,
        budget=2,
        objective="forget_quality",
        space={"lr": [3e-3, 1e-2]},
        fixed={"max_steps": 5},
        progress=False,
    )
    trials = res.trials
    # forget_quality is declared HIGHER: the loss is −value, and the best trial has the highest value
    assert np.allclose(trials["score"], -trials["forget_quality"])
    assert res.best_score == trials["score"].min()
    assert res.best_params["lr"] == trials.loc[trials["score"].idxmin(), "lr"]
    assert {"forget_ma", "retain_ma", "val_ma", "avg_gap_ma"} <= set(trials.columns)
    default = ob.tune(
        "ga", data, split, original=original, recipe=recipe, budget=1, fixed={"max_steps": 5}, progress=False
    )
    assert default.objective == "avg_gap_ma" and default.best_score == default.trials["avg_gap_ma"].iloc[0]
    with pytest.raises(ValueError, match="unknown objective 'tow'"):
        ob.tune("ga", data, split, original=original, recipe=recipe, objective="tow", progress=False)


def test_attacks_on_a_causal_lm_relearn_some_people_and_measure_the_others():
    from obliviate.evaluation.attacks import Relearn

    data, recipe, split, original, oracles = _setup()
    rows, measured = Relearn(fraction=0.5).parts(data, split, seed=0)
    relearned = set(data.groups[rows.numpy()])
    assert -1 not in relearned and len(relearned) == 2  # half of the 3 forget people, rounded
    assert relearned.isdisjoint(data.groups[measured.forget_ids.numpy()])  # the others are measured
    attacks = [{"relearn": {"fraction": 0.5}}, "quantize-int4", "relearn-related"]
    paraphrased = Relearn(source="related").relearn_set(data, split, seed=0)
    assert paraphrased is data.qa[0]  # the forget people's facts, said differently
    report = ob.evaluate(
        original, data, split, oracle=oracles, original=original, attacks=attacks, metrics=["forget_ma"]
    )
    rows = (
        "relearn/forget_ma",
        "relearn/c_gamma_max",
        "relearn/recovery",
        "quantize-int4/extraction_forget",
        "relearn-related/extraction_sampled_forget",
    )
    for row in rows:
        assert row in report.values and row in report.oracle and row in report.floor
    # relearning half the people teaches the oracle about them, not about the others: recovery is small
    assert report.oracle["relearn/recovery"] < 0.5
    again = ob.evaluate(
        oracles[0], data, split, oracle=oracles, original=original, attacks=attacks, metrics=["forget_ma"]
    )
    assert again.gap("relearn/forget_ma") == 0 and again.gap("quantize-int4/forget_ma") == 0


def test_retrain_and_none_run_on_causal_lms():
    """``retrain`` on a language model is the recipe on D_r (oracle A itself: bench trains its LM oracles
    this way); ``none`` returns a copy of the original."""
    data, recipe, split, original, (oracle, _) = _setup()
    res = ob.unlearn(original, data.train, split, "retrain", recipe=recipe, seed=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), oracle.state_dict().values()))
    none = ob.unlearn(original, data.train, split, "none", seed=0, progress=False).model
    assert none is not original and all(
        torch.equal(a, b) for a, b in zip(none.state_dict().values(), original.state_dict().values())
    )
    with pytest.raises(ValueError, match="steps, not epochs"):
        ob.unlearn(original, data.train, split, "retrain", recipe=recipe, epochs=2, progress=False)
