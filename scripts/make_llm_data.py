"""Generate the bundled `reviews-json` instruction task from the bundled `sentiment` reviews.

Each example asks for one line of JSON with the review's sentiment and its topic, which the review
generator (scripts/make_sample_data.py) knows but the CSV files do not hold: the script replays that
generator with the same seed, recording the domain of every sentence, and checks that it reproduces
the bundled CSV rows exactly. Deterministic: the same script gives the same bytes. Run from the
repository root: `python scripts/make_llm_data.py`; the JSONL files it writes under
`nbkit/core/llm/data/` are committed.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import make_sample_data as sample  # noqa: E402

OUT_DIR = ROOT / "nbkit" / "core" / "llm" / "data"
INSTRUCTION = ("Reply with one line of JSON: the review's sentiment (positive or negative) and topic "
               "(book, film, game, gadget, hotel or restaurant).")
DOMAIN_NAMES = sorted(sample.DOMAINS)


class RecordingGenerator(sample.Generator):
    """The review generator, unchanged in its random draws, remembering each sentence's domain."""

    domains: dict[str, str] = {}

    def pick(self, seq):
        value = super().pick(seq)
        if list(seq) == DOMAIN_NAMES:
            self._domain = value
        return value

    def sentence(self, positive: bool):
        text, kind = super().sentence(positive)
        RecordingGenerator.domains[text] = self._domain
        return text, kind


def answer(label: str, topic: str) -> str:
    return json.dumps({"sentiment": label, "topic": topic})


def main() -> None:
    sample.Generator = RecordingGenerator  # generate() builds its generator by this name
    train, test = sample.generate()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        bundled = sample.OUT_DIR / f"sentiment_{split}.csv"
        with bundled.open(encoding="utf-8") as f:
            assert [(r["text"], r["label"]) for r in csv.DictReader(f)] == rows, f"{bundled} differs"
        lines = []
        for text, label in rows:
            messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text},
                        {"role": "assistant", "content": answer(label, RecordingGenerator.domains[text])}]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        (OUT_DIR / f"reviews_json_{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        topics = sorted({RecordingGenerator.domains[t] for t, _ in rows})
        print(f"{split}: {len(rows)} examples, topics {', '.join(topics)}")


if __name__ == "__main__":
    main()
