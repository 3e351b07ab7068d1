"""A small customer table with a subject column, and a model trained on it (seconds)."""

import numpy as np
import pandas as pd
import pytest

import obliviate as ob
from obliviate.data.user import from_file, save_source


def customer_table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Three classes from the features; customer u-4711's 8 rows carry labels the rule does not give,
    so a model that trained on them differs from one that never did."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    subject = np.array([f"u-{1000 + i // 6}" for i in range(n)])
    subject[:8] = "u-4711"
    y[:8] = (y[:8] + 1) % 3
    region = rng.choice(["north", "south"], n)
    return pd.DataFrame(
        {"customer_id": subject, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "region": region, "churn": y}
    )


@pytest.fixture(scope="session")
def table_run(tmp_path_factory):
    """(csv path, data, model folder), shared by every evidence test: the default recipe at lr 1e-2 for
    30 epochs fits u-4711's odd labels (doing nothing fails the per-example attack at p ~ 1e-8) in a
    fraction of a second."""
    root = tmp_path_factory.mktemp("customers")
    csv = root / "customers.csv"
    customer_table().to_csv(csv, index=False)
    data = from_file(csv, target="churn", subject="customer_id")
    recipe = ob.Recipe.default_for(data).replace(epochs=30, lr=1e-2)
    model = ob.train(recipe, data.train, seed=0, progress=False)
    folder = root / "model"
    ob.save_model(model, folder, {"data": save_source(data, folder), "role": "original"})
    return csv, data, folder
