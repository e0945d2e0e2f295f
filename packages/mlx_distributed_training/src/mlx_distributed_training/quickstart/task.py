"""Generate the quickstart data: dates written many ways, with YYYY-MM-DD replies.

The base model reads dates well but replies in full sentences, so its exact
match on held-out dates is low; a short LoRA run teaches it the answer format
and the month arithmetic. Output is deterministic for a given seed, and
`python -m mlx_distributed_training.quickstart.task` rewrites the bundled files.
"""

from __future__ import annotations

import argparse
import calendar
import datetime
import json
import random
from pathlib import Path

from mlx_distributed_training.quickstart import DATA_DIR

SPLIT_SIZES = {"train": 240, "valid": 40, "test": 100}
SEED = 20261204
FIRST_DAY = datetime.date(1950, 1, 1)
DAY_SPAN = (datetime.date(2049, 12, 31) - FIRST_DAY).days

QUESTIONS = (
    "Convert this date to YYYY-MM-DD: {date}",
    "Write {date} as an ISO 8601 date.",
    "What is {date} in YYYY-MM-DD format?",
    "Normalize the date: {date}",
)


def ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def written_forms(date: datetime.date) -> list[str]:
    """Ways people write a date, all unambiguous about day and month."""
    month = calendar.month_name[date.month]
    short = calendar.month_abbr[date.month]
    return [
        f"{month} {date.day}, {date.year}",
        f"{date.day} {month} {date.year}",
        f"{short} {date.day} {date.year}",
        f"the {ordinal(date.day)} of {month}, {date.year}",
        f"{month} {ordinal(date.day)}, {date.year}",
        f"{date.day}-{short}-{date.year}",
        f"{date.year}, {month} {date.day}",
    ]


def make_record(rng: random.Random, date: datetime.date) -> dict:
    written = rng.choice(written_forms(date))
    question = rng.choice(QUESTIONS).format(date=written)
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": date.isoformat()},
        ]
    }


def generate(seed: int = SEED) -> dict[str, list[dict]]:
    """Generate all splits; no date appears in more than one split."""
    rng = random.Random(seed)
    total = sum(SPLIT_SIZES.values())
    offsets = rng.sample(range(DAY_SPAN + 1), total)
    dates = [FIRST_DAY + datetime.timedelta(days=offset) for offset in offsets]
    splits = {}
    start = 0
    for name, size in SPLIT_SIZES.items():
        chosen = dates[start : start + size]
        splits[name] = [make_record(rng, date) for date in chosen]
        start += size
    return splits


def render_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def write(folder: Path = DATA_DIR, seed: int = SEED) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in generate(seed).items():
        (folder / f"{name}.jsonl").write_text(render_jsonl(records))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    write(args.out, args.seed)


if __name__ == "__main__":
    main()
