"""Population MIAs against independent, line-for-line ports of the papers' released code, on a *trained*
model's outputs (scikit-learn digits), equal to the last digit.

Ports (read from the released code, re-typed here so that a change to obliviate cannot move both sides):
* SalUn ``Classification/evaluation/SVC_MIA.py`` (``collect_prob``, ``SVC_fit_predict``, the ``confidence``
  entry of ``SVC_MIA``) as ``main_forget.py`` calls it: shadow_train = ``Subset(retain_dataset,
  range(len(test)))``, shadow_test = test, target_train = None, target_test = forget.
* The NeurIPS 2023 starting kit's ``simple_mia`` (``unlearning-CIFAR10.ipynb``).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import linear_model, model_selection
from sklearn.svm import SVC
from torch.utils.data import DataLoader, Subset

import obliviate as ob
from obliviate import metrics as M
from obliviate.objectives.classification import ClassificationTask


def _collect_prob(loader, model):
    prob, targets = [], []
    model.eval()
    with torch.no_grad():
        for data, target in loader:
            prob.append(F.softmax(model(data), dim=-1).data)
            targets.append(target)
    return torch.cat(prob), torch.cat(targets)


def _svc_fit_predict(shadow_train, shadow_test, target_test):
    n_train, n_test = shadow_train.shape[0], shadow_test.shape[0]
    x_shadow = torch.cat([shadow_train, shadow_test]).cpu().numpy().reshape(n_train + n_test, -1)
    y_shadow = np.concatenate([np.ones(n_train), np.zeros(n_test)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x_shadow, y_shadow)
    accs = [1 - clf.predict(target_test.cpu().numpy().reshape(target_test.shape[0], -1)).mean()]
    return np.mean(accs)


def salun_mia_efficacy(model, retain_dataset, test_dataset, forget_dataset, batch_size=256):
    shadow_train = DataLoader(Subset(retain_dataset, list(range(len(test_dataset)))), batch_size=batch_size)
    shadow_test = DataLoader(test_dataset, batch_size=batch_size)
    target_test = DataLoader(forget_dataset, batch_size=batch_size)
    confs = []
    for loader in (shadow_train, shadow_test, target_test):
        prob, labels = _collect_prob(loader, model)
        confs.append(torch.gather(prob, 1, labels[:, None]))
    return _svc_fit_predict(*confs)


def simple_mia(sample_loss, members, n_splits=10, random_state=0):
    attack_model = linear_model.LogisticRegression()
    cv = model_selection.StratifiedShuffleSplit(n_splits=n_splits, random_state=random_state)
    return model_selection.cross_val_score(attack_model, sample_loss, members, cv=cv, scoring="accuracy")


@pytest.fixture(scope="module")
def oracle(digits, recipe, random_split):
    return ob.train(recipe, random_split.retain_set(digits.train), seed=0, progress=False)


@pytest.mark.parametrize("who", ["original", "oracle"])
@pytest.mark.parametrize("kind", ["random", "class"])
def test_mia_efficacy_equals_salun_svc_mia(digits, original, oracle, random_split, class_split, who, kind):
    split = random_split if kind == "random" else class_split
    model = original if who == "original" else oracle
    ours = ob.evaluate(model, digits, split, metrics=["mia_efficacy"])["mia_efficacy"]
    theirs = salun_mia_efficacy(model, split.retain_set(digits.train), digits.test, split.forget_set(digits.train))
    assert ours == theirs


def test_loss_mia_equals_the_starting_kit_simple_mia(digits, original, random_split):
    """With |D_f| ≤ |test| nothing is subsampled on our side; the kit stacks test first, then forget."""

    def loss(ds):
        return F.cross_entropy(*ClassificationTask(10).predict(original, ds), reduction="none")

    forget, test = loss(random_split.forget_set(digits.train)), loss(digits.test)[: len(random_split)]
    kit = simple_mia(
        np.concatenate([test.numpy(), forget.numpy()]).reshape(-1, 1), [0] * len(test) + [1] * len(forget)
    ).mean()
    assert M.loss_mia(forget, test) == kit
