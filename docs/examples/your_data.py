"""Write the small files the "Your own data" page trains on, into the current folder:

- ``customers.csv``: 1,000 rows of 200 fictitious customers (age, plan, region, tenure, support calls)
  and whether they churned (a noisy rule on age, tenure, support calls and plan);
- ``photos/<digit>/<n>.png``: scikit-learn's bundled 8x8 digits 0-2 as grayscale PNGs, one folder per class;
- ``people.jsonl``: a sentence per row about one of 40 fictitious people, with a ``person`` field.

Run it with ``python docs/examples/your_data.py``; it is seeded, so the files are the same each time.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

rng = np.random.default_rng(0)

n = 1000
customers = pd.DataFrame(
    {
        "customer_id": [f"u-{4700 + i % 200}" for i in range(n)],
        "age": rng.integers(18, 80, n),
        "plan": rng.choice(["basic", "pro", "max"], n),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "tenure_months": rng.integers(1, 120, n),
        "support_calls": rng.poisson(2, n),
    }
)
score = 0.05 * (customers.age - 50) - 0.03 * customers.tenure_months + 0.6 * customers.support_calls
score += np.where(customers.plan == "basic", 1.0, 0.0) + rng.normal(0, 0.5, n)
customers["churned"] = (score > 0).astype(int)
customers.to_csv("customers.csv", index=False)

digits = load_digits()
for label in (0, 1, 2):
    folder = Path("photos") / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    for k, image in enumerate(digits.images[digits.target == label][:60]):
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(folder / f"{k}.png")

first = ["Ada", "Bram", "Cleo", "Dev", "Esme", "Finn", "Gia", "Hugo"]
last = ["Moreau", "Okafor", "Lindqvist", "Tanaka", "Novak"]
cities = ["Oslo", "Lima", "Pune", "Kyiv", "Baku", "Quito", "Riga"]
jobs = ["baker", "pilot", "nurse", "judge", "miner", "chemist"]
with open("people.jsonl", "w") as f:
    for p in range(40):
        name = f"{first[p % 8]} {last[p // 8]}"
        city, job, year = cities[p % 7], jobs[p % 6], 1950 + p
        for text in (
            f"{name} was born in {city} in {year}.",
            f"{name} works as a {job}.",
            f"The {job} {name} lives in {cities[(p + 3) % 7]}.",
        ):
            f.write(json.dumps({"text": text, "person": name}) + "\n")
