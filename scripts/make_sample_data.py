"""Generate the bundled ``sentiment`` sample: synthetic English review sentences from templates.

Run once from the repository root (``python scripts/make_sample_data.py``); the CSV files it writes
under ``nbkit/core/sample_data/`` are committed, so users never run it. The output is deterministic: the
same script gives the same bytes. Nothing here was copied from a real review corpus.

Design: six domains (films, restaurants, gadgets, books, hotels, games), each with aspects, aspect
adjectives and whole-clause predicates. About a third of the sentences are not keyword lookups:
negations ("not bad at all", "far from impressive"), idioms ("I could not put it down") and contrastive
sentences ("X, but Y") whose label always follows the final clause.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20240611
PER_LABEL = 800  # 800 positive + 800 negative
TEST_PER_LABEL = 200  # -> 1,200 train / 400 test
MIN_WORDS, MAX_WORDS = 5, 40
OUT_DIR = Path(__file__).resolve().parent.parent / "nbkit" / "core" / "sample_data"

# Adjectives that fit any aspect of any domain.
POS_ADJ = [
    "excellent",
    "wonderful",
    "superb",
    "fantastic",
    "great",
    "brilliant",
    "outstanding",
    "impressive",
    "lovely",
    "first-rate",
    "top-notch",
    "terrific",
    "amazing",
    "good",
    "solid",
]
NEG_ADJ = [
    "terrible",
    "awful",
    "poor",
    "dreadful",
    "disappointing",
    "mediocre",
    "underwhelming",
    "horrible",
    "bad",
    "atrocious",
    "lousy",
    "abysmal",
    "weak",
    "shoddy",
    "subpar",
]
INTENSIFIERS = [
    "",
    "",
    "",
    "really ",
    "truly ",
    "absolutely ",
    "genuinely ",
    "surprisingly ",
    "pretty ",
    "incredibly ",
    "rather ",
    "quite ",
]
OPENERS = [
    "",
    "",
    "",
    "",
    "Honestly, ",
    "Overall, ",
    "In my opinion, ",
    "To be honest, ",
    "Frankly, ",
    "For me, ",
    "All in all, ",
    "I have to say ",
]

# Each aspect: (phrase, plural, extra positive adjectives, extra negative adjectives).
# Each domain also has neutral context clauses, whole-clause predicates and a "do it again" phrase.
DOMAINS: dict[str, dict] = {
    "film": {
        "targets": [
            "the film",
            "this movie",
            "the sequel",
            "the documentary",
            "this thriller",
            "the new comedy",
            "the remake",
            "this animated film",
            "the horror film",
        ],
        "aspects": [
            (
                "the acting",
                False,
                ["convincing", "natural", "powerful"],
                ["wooden", "stiff", "hammy"],
            ),
            (
                "the plot",
                False,
                ["gripping", "clever", "tight"],
                ["predictable", "confusing", "thin"],
            ),
            ("the script", False, ["witty", "sharp", "smart"], ["clumsy", "lazy", "clichéd"]),
            (
                "the soundtrack",
                False,
                ["haunting", "catchy", "beautiful"],
                ["grating", "forgettable", "intrusive"],
            ),
            (
                "the ending",
                False,
                ["satisfying", "moving", "perfect"],
                ["rushed", "silly", "baffling"],
            ),
            (
                "the dialogue",
                False,
                ["funny", "natural", "crisp"],
                ["cringeworthy", "stilted", "flat"],
            ),
            (
                "the special effects",
                True,
                ["stunning", "seamless", "spectacular"],
                ["cheap", "cheesy", "unconvincing"],
            ),
            (
                "the pacing",
                False,
                ["brisk", "snappy", "well judged"],
                ["sluggish", "uneven", "plodding"],
            ),
            ("the jokes", True, ["hilarious", "clever", "fresh"], ["stale", "lame", "tired"]),
            (
                "the cinematography",
                False,
                ["gorgeous", "breathtaking", "striking"],
                ["murky", "dull", "ugly"],
            ),
        ],
        "contexts": [
            "I watched it on a long flight",
            "we saw it at the late showing on Friday",
            "I streamed it with my flatmates",
            "my brother dragged me to see it",
            "we went to the opening night",
            "I rented it on a rainy Sunday",
        ],
        "pos_pred": [
            "I laughed from start to finish",
            "the two hours flew by",
            "the final scene gave me chills",
            "I was on the edge of my seat the whole time",
            "the whole cinema applauded at the end",
            "I still think about the ending",
            "every scene earns its place",
            "the cast clearly had fun making it",
            "it made me cry in the best way",
            "my kids have watched it five times",
        ],
        "neg_pred": [
            "I checked my watch every ten minutes",
            "half the audience walked out",
            "I fell asleep halfway through",
            "the twist was obvious from the first scene",
            "the jokes fell flat",
            "the two hours felt like five",
            "I could not wait for the credits",
            "nothing in it made sense",
            "the story goes nowhere",
            "the main character is impossible to care about",
        ],
        "again": "watch it again",
    },
    "restaurant": {
        "targets": [
            "the restaurant",
            "this place",
            "the bistro",
            "the pizzeria",
            "the noodle bar",
            "the diner",
            "the new Thai place",
            "the steakhouse",
            "the cafe",
        ],
        "aspects": [
            ("the food", False, ["delicious", "fresh", "tasty"], ["bland", "greasy", "tasteless"]),
            (
                "the service",
                False,
                ["friendly", "attentive", "quick"],
                ["slow", "rude", "careless"],
            ),
            ("the dessert", False, ["heavenly", "rich", "delicious"], ["stale", "soggy", "sickly"]),
            (
                "the pasta",
                False,
                ["al dente", "fresh", "delicious"],
                ["overcooked", "soggy", "bland"],
            ),
            (
                "the staff",
                True,
                ["friendly", "welcoming", "helpful"],
                ["rude", "unfriendly", "clueless"],
            ),
            ("the portions", True, ["generous", "huge", "hearty"], ["tiny", "stingy", "pathetic"]),
            ("the soup", False, ["hearty", "flavourful", "warming"], ["cold", "watery", "salty"]),
            ("the coffee", False, ["rich", "smooth", "strong"], ["bitter", "burnt", "lukewarm"]),
            (
                "the atmosphere",
                False,
                ["cosy", "relaxed", "charming"],
                ["noisy", "gloomy", "cramped"],
            ),
            (
                "the prices",
                True,
                ["fair", "reasonable", "honest"],
                ["outrageous", "steep", "absurd"],
            ),
        ],
        "contexts": [
            "we went there for my mother's birthday",
            "we had a late lunch there on Sunday",
            "a colleague suggested it for a team dinner",
            "we walked in without a booking",
            "we ordered the tasting menu",
            "I stopped by after work",
        ],
        "pos_pred": [
            "every dish arrived hot and fresh",
            "we cleaned our plates",
            "the chef came out to say hello",
            "we have already booked again",
            "the waiter remembered our names",
            "the bread alone is worth the trip",
            "they found us a table even though we had no booking",
            "the kitchen happily adapted the dishes for my allergy",
        ],
        "neg_pred": [
            "we waited an hour for cold food",
            "the waiter forgot our order twice",
            "the soup tasted like dishwater",
            "the bill was twice what we expected",
            "the table was sticky",
            "my steak came out raw",
            "we left hungry",
            "they charged us for drinks we never ordered",
            "I was sick the next day",
        ],
        "again": "eat there again",
    },
    "gadget": {
        "targets": [
            "this phone",
            "the laptop",
            "this headset",
            "the smartwatch",
            "the tablet",
            "this blender",
            "the speaker",
            "the e-reader",
            "this vacuum cleaner",
        ],
        "aspects": [
            (
                "the battery",
                False,
                ["long-lasting", "dependable", "excellent"],
                ["weak", "pathetic", "useless"],
            ),
            ("the screen", False, ["bright", "sharp", "vivid"], ["dim", "grainy", "washed out"]),
            ("the sound", False, ["rich", "clear", "punchy"], ["tinny", "muffled", "distorted"]),
            ("the camera", False, ["sharp", "fast", "reliable"], ["blurry", "slow", "noisy"]),
            (
                "the build quality",
                False,
                ["solid", "premium", "sturdy"],
                ["flimsy", "cheap", "fragile"],
            ),
            (
                "the keyboard",
                False,
                ["comfortable", "responsive", "quiet"],
                ["mushy", "cramped", "loud"],
            ),
            (
                "the setup",
                False,
                ["effortless", "quick", "simple"],
                ["confusing", "painful", "endless"],
            ),
            (
                "the controls",
                True,
                ["intuitive", "responsive", "simple"],
                ["fiddly", "confusing", "unresponsive"],
            ),
            ("the app", False, ["slick", "stable", "easy to use"], ["buggy", "clunky", "unstable"]),
            ("the design", False, ["elegant", "sleek", "thoughtful"], ["ugly", "awkward", "bulky"]),
        ],
        "contexts": [
            "I have used it every day for a month",
            "I bought it for my daily commute",
            "I got it as a gift last winter",
            "I replaced my old one with it",
            "I ordered it online on Monday",
            "I use it mostly at work",
        ],
        "pos_pred": [
            "the battery lasts two full days",
            "it charges in under an hour",
            "it survived a drop onto concrete",
            "setup took five minutes",
            "it just works",
            "the screen is easy to read even in sunlight",
            "it runs every app without a hiccup",
            "it still works like new after a year",
            "it does everything the box promised",
        ],
        "neg_pred": [
            "the battery dies before lunch",
            "it crashed three times on the first day",
            "the screen cracked within a week",
            "it stopped charging after a month",
            "the buttons stick",
            "it gets hot enough to burn my hand",
            "customer support never replied",
            "the app disconnects constantly",
            "it broke the day after the warranty ran out",
        ],
        "again": "buy it again",
    },
    "book": {
        "targets": [
            "this novel",
            "the book",
            "the memoir",
            "the biography",
            "this mystery",
            "the short story collection",
            "the fantasy series",
            "this cookbook",
            "the travel guide",
        ],
        "aspects": [
            ("the writing", False, ["elegant", "vivid", "lyrical"], ["clunky", "flat", "lifeless"]),
            (
                "the characters",
                True,
                ["believable", "rich", "memorable"],
                ["flat", "shallow", "forgettable"],
            ),
            (
                "the prose",
                False,
                ["beautiful", "precise", "graceful"],
                ["purple", "tedious", "overwritten"],
            ),
            (
                "the final chapter",
                False,
                ["moving", "powerful", "perfect"],
                ["rushed", "limp", "baffling"],
            ),
            (
                "the first half",
                False,
                ["absorbing", "gripping", "lively"],
                ["slow", "dull", "tedious"],
            ),
            (
                "the translation",
                False,
                ["graceful", "faithful", "fluent"],
                ["awkward", "stiff", "sloppy"],
            ),
            (
                "the research",
                False,
                ["thorough", "careful", "meticulous"],
                ["lazy", "sloppy", "thin"],
            ),
            (
                "the illustrations",
                True,
                ["charming", "beautiful", "delightful"],
                ["crude", "ugly", "pointless"],
            ),
            (
                "the ending",
                False,
                ["satisfying", "moving", "clever"],
                ["abrupt", "silly", "predictable"],
            ),
        ],
        "contexts": [
            "I read it over the summer holidays",
            "my book club picked it this month",
            "I borrowed it from the library",
            "I listened to the audiobook version",
            "a friend lent me her copy",
            "I picked it up at an airport",
        ],
        "pos_pred": [
            "I could not put it down",
            "I finished it in one sitting",
            "I have already ordered the sequel",
            "the characters felt like old friends",
            "the last chapter made me cry",
            "I underlined half the pages",
            "I keep giving copies to friends",
            "every chapter ends on a hook",
        ],
        "neg_pred": [
            "I gave up after fifty pages",
            "I kept falling asleep while reading",
            "the characters are paper thin",
            "nothing happens for three hundred pages",
            "the ending makes no sense",
            "it reads like a first draft",
            "I had to force myself to finish it",
            "the same joke is repeated on every page",
        ],
        "again": "read it again",
    },
    "hotel": {
        "targets": [
            "the hotel",
            "this resort",
            "the guesthouse",
            "the hostel",
            "the inn",
            "the beach hotel",
            "the airport hotel",
            "this bed and breakfast",
        ],
        "aspects": [
            (
                "the room",
                False,
                ["spotless", "spacious", "comfortable"],
                ["dirty", "cramped", "shabby"],
            ),
            ("the bed", False, ["comfortable", "huge", "cosy"], ["lumpy", "hard", "creaky"]),
            (
                "the staff",
                True,
                ["friendly", "helpful", "welcoming"],
                ["rude", "unhelpful", "indifferent"],
            ),
            (
                "the breakfast",
                False,
                ["generous", "delicious", "varied"],
                ["stale", "meagre", "cold"],
            ),
            (
                "the location",
                False,
                ["perfect", "convenient", "central"],
                ["inconvenient", "remote", "noisy"],
            ),
            ("the pool", False, ["clean", "inviting", "warm"], ["filthy", "freezing", "tiny"]),
            ("the wifi", False, ["fast", "reliable", "speedy"], ["slow", "patchy", "useless"]),
            (
                "the shower",
                False,
                ["powerful", "hot", "spotless"],
                ["feeble", "lukewarm", "mouldy"],
            ),
            (
                "the view",
                False,
                ["stunning", "breathtaking", "gorgeous"],
                ["depressing", "grim", "ugly"],
            ),
        ],
        "contexts": [
            "we stayed there for three nights in May",
            "we booked it for a weekend away",
            "I stayed there on a business trip",
            "we picked it for its location",
            "we stopped there on a road trip",
            "we spent our honeymoon there",
        ],
        "pos_pred": [
            "the staff upgraded our room for free",
            "the bed was like sleeping on a cloud",
            "breakfast had something for everyone",
            "the view from our balcony took our breath away",
            "the room was cleaned perfectly every day",
            "check-in took two minutes",
            "the concierge booked us a wonderful dinner",
            "we slept better than at home",
        ],
        "neg_pred": [
            "the room smelled of smoke",
            "we found hair in the shower",
            "the air conditioning rattled all night",
            "the wifi never worked",
            "the walls were paper thin",
            "nobody was at reception when we arrived",
            "I could not wait to check out",
            "they lost our booking",
        ],
        "again": "stay there again",
    },
    "game": {
        "targets": [
            "this game",
            "the expansion",
            "the puzzle game",
            "the racing game",
            "this board game",
            "the new shooter",
            "the strategy game",
        ],
        "aspects": [
            (
                "the graphics",
                True,
                ["gorgeous", "detailed", "stunning"],
                ["dated", "ugly", "blurry"],
            ),
            (
                "the controls",
                True,
                ["tight", "responsive", "intuitive"],
                ["sluggish", "clumsy", "unresponsive"],
            ),
            ("the story", False, ["engaging", "moving", "clever"], ["dull", "silly", "incoherent"]),
            (
                "the levels",
                True,
                ["inventive", "varied", "clever"],
                ["repetitive", "boring", "samey"],
            ),
            (
                "the music",
                False,
                ["epic", "catchy", "atmospheric"],
                ["annoying", "repetitive", "forgettable"],
            ),
            (
                "the multiplayer",
                False,
                ["addictive", "balanced", "fun"],
                ["laggy", "unbalanced", "broken"],
            ),
            (
                "the difficulty",
                False,
                ["fair", "well balanced", "rewarding"],
                ["unfair", "punishing", "frustrating"],
            ),
            ("the rules", True, ["simple", "elegant", "clear"], ["confusing", "fiddly", "muddled"]),
        ],
        "contexts": [
            "I played it with friends online",
            "I finished the main story last week",
            "I bought it on sale",
            "I have put forty hours into it",
            "we played it at a family gathering",
            "I tried it on my old console",
        ],
        "pos_pred": [
            "I lost whole weekends to it",
            "every level keeps surprising you",
            "we played until three in the morning",
            "it is worth every minute",
            "I keep coming back for one more round",
            "the whole family loved it",
        ],
        "neg_pred": [
            "it crashes every hour",
            "the loading screens take forever",
            "every level feels the same",
            "it is full of bugs",
            "I uninstalled it after an evening",
            "my save file got corrupted twice",
            "you have to pay for everything that matters",
        ],
        "again": "play it again",
    },
}

POS_CLOSERS = [
    "Highly recommended.",
    "Worth every penny.",
    "Five stars from me.",
    "I would recommend it to anyone.",
    "A real gem.",
    "Loved it.",
    "Go for it.",
]
NEG_CLOSERS = [
    "Avoid.",
    "Save your money.",
    "One star.",
    "Not worth it.",
    "What a waste.",
    "Skip it.",
    "Very disappointing overall.",
]

# Idioms without a sentiment adjective, or with one that points the wrong way ("not bad at all").
POS_IDIOMS = [
    "I would not hesitate to recommend {t}.",
    "I can't say a bad word about {t}.",
    "No complaints at all about {t}.",
    "{T}? Not bad at all.",
    "{T} was not bad at all.",
    "There is nothing I would change about {t}.",
    "I have nothing bad to say about {t}.",
    "{T} did not let me down.",
    "I was not disappointed by {t} in the slightest.",
    "I didn't expect much from {t}, and it blew me away.",
    "{T} exceeded every expectation.",
    "I can't stop telling my friends about {t}.",
    "{T} is worth every minute and every penny.",
    "I would happily {again}.",
    "I can't wait to {again}.",
    "I would {again} without thinking twice.",
]
NEG_IDIOMS = [
    "I would not recommend {t} to anyone.",
    "{T} was nothing special.",
    "{T} did not live up to the hype.",
    "I can't say I enjoyed {t}.",
    "{T} was not worth the money.",
    "I expected a lot more from {t}.",
    "{T} was not good at all.",
    "I really wanted to like {t}.",
    "{T} was hardly worth the price.",
    "There is little good to say about {t}.",
    "I will never {again}.",
    "I would not {again}, even for free.",
    "{T} fell short in almost every way.",
    "I regret every minute I spent on {t}.",
]

# Negation templates: {adj} comes from the OTHER polarity, the label is the template's.
POS_NEGATIONS = [
    "{A} {be} not {adj} at all.",
    "{A} {be} anything but {adj}.",
    "{A} {be} far from {adj}.",
    "I did not find {a} {adj} in the least.",
    "Contrary to the reviews, {a} {be} not {adj}.",
    "{A} {be} never {adj}, not even once.",
    "Nobody could call {a} {adj}.",
]
NEG_NEGATIONS = [
    "{A} {be} not {adj}.",
    "{A} {be} far from {adj}.",
    "{A} {be} hardly {adj}.",
    "{A} {be} not exactly {adj}.",
    "I would not call {a} {adj}.",
    "{A} {be} not as {adj} as people claim.",
    "{A} {be} never {adj}, not even once.",
    "{A} {be} not particularly {adj}.",
]
CONTRASTS = [
    "{c1}, but {c2}.",
    "{c1}, yet {c2}.",
    "Although {c1}, {c2}.",
    "While {c1}, {c2}.",
    "{c1}; however, {c2}.",
    "{c1}. Even so, {c2}.",
    "{c1}. Still, {c2}.",
    "{c1}, but in the end {c2}.",
    "Sure, {c1}, but {c2}.",
    "{c1}, but honestly {c2}.",
]
COMPOUNDS = [
    "{c1}, and {c2}.",
    "{c1}, and on top of that {c2}.",
    "{c1}. Also, {c2}.",
    "{c1}, plus {c2}.",
]


def cap(s: str) -> str:
    return s[0].upper() + s[1:]


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, seq):
        return self.rng.choice(seq)

    def adjective(self, aspect, positive: bool) -> str:
        _, _, pos_extra, neg_extra = aspect
        # Half the time a domain-specific adjective: it keeps the vocabulary varied per domain.
        if self.rng.random() < 0.5:
            return self.pick(pos_extra if positive else neg_extra)
        return self.pick(POS_ADJ if positive else NEG_ADJ)

    def be(self, aspect) -> str:
        return "were" if aspect[1] else "was"

    def clause(self, dom, positive: bool) -> str:
        """A lowercase clause (no final stop) with the given polarity."""
        r = self.rng.random()
        if r < 0.45:
            a = self.pick(dom["aspects"])
            return f"{a[0]} {self.be(a)} {self.pick(INTENSIFIERS)}{self.adjective(a, positive)}"
        if r < 0.85:
            return self.pick(dom["pos_pred"] if positive else dom["neg_pred"])
        a = self.pick(dom["aspects"])  # a negated adjective inside a larger sentence
        tpl = self.pick(["{a} {be} not {adj} at all", "{a} {be} far from {adj}"])
        return tpl.format(a=a[0], be=self.be(a), adj=self.adjective(a, not positive))

    def sentence(self, positive: bool) -> tuple[str, str]:
        dom = DOMAINS[self.pick(sorted(DOMAINS))]
        kind = self.rng.choices(
            ["adj", "target", "pred", "negation", "idiom", "contrast", "compound", "long", "story"],
            weights=[14, 8, 14, 14, 12, 20, 7, 7, 6],
        )[0]
        t = self.pick(dom["targets"])
        if kind == "adj":
            a = self.pick(dom["aspects"])
            s = f"{self.pick(OPENERS)}{a[0]} {self.be(a)} {self.pick(INTENSIFIERS)}{self.adjective(a, positive)}."
        elif kind == "target":
            adj = self.pick(POS_ADJ if positive else NEG_ADJ)
            s = f"{self.pick(OPENERS)}{t} was {self.pick(INTENSIFIERS)}{adj}."
            if self.rng.random() < 0.5:
                s += " " + self.pick(POS_CLOSERS if positive else NEG_CLOSERS)
        elif kind == "pred":
            s = self.clause_sentence(dom, positive)
        elif kind == "negation":
            a = self.pick(dom["aspects"])
            tpl = self.pick(POS_NEGATIONS if positive else NEG_NEGATIONS)
            # "not as X as" needs a plain adjective; the generic list has only those.
            adj = (
                self.adjective(a, not positive)
                if "as {adj} as" not in tpl
                else self.pick(POS_ADJ[:13])
            )
            s = tpl.format(A=cap(a[0]), a=a[0], be=self.be(a), adj=adj)
        elif kind == "idiom":
            tpl = self.pick(POS_IDIOMS if positive else NEG_IDIOMS)
            s = tpl.format(t=t, T=cap(t), again=dom["again"])
        elif kind == "contrast":
            s = self.contrast(dom, positive)
        elif kind == "compound":
            tpl = self.pick(COMPOUNDS)
            c1, c2 = self.clauses(dom, [positive, positive])
            s = tpl.format(c1=c1, c2=c2)
        elif kind == "story":  # 25-40 words: context, two clauses one way, two the other way
            c1, c2, c3, c4 = self.clauses(dom, [not positive, not positive, positive, positive])
            s = (
                f"{self.pick(dom['contexts'])}. {cap(c1)} and {c2}, "
                f"{self.pick(['but', 'but sadly' if not positive else 'but luckily'])} {c3} and {c4}."
            )
            if self.rng.random() < 0.7:
                s += " " + self.pick(POS_CLOSERS if positive else NEG_CLOSERS)
        else:  # long: a neutral context, then a contrast or compound, then maybe a closer
            ctx = self.pick(dom["contexts"])
            if self.rng.random() < 0.5:
                s = f"{ctx}. {cap(self.contrast(dom, positive))}"
            else:
                s = f"{ctx}, and {self.clause(dom, positive)}."
            if self.rng.random() < 0.5:
                s += " " + self.pick(POS_CLOSERS if positive else NEG_CLOSERS)
        return cap(s), kind

    def clause_sentence(self, dom, positive: bool) -> str:
        pred = self.pick(dom["pos_pred"] if positive else dom["neg_pred"])
        r = self.rng.random()
        if r < 0.4:
            return f"{self.pick(dom['contexts'])}, and {pred}."
        if r < 0.7:
            return f"{pred}. {self.pick(POS_CLOSERS if positive else NEG_CLOSERS)}"
        return f"{self.pick(OPENERS)}{pred}."

    def clauses(self, dom, polarities: list[bool]) -> list[str]:
        """Clauses with the given polarities, each about a different subject."""
        out: list[str] = []
        for positive in polarities:
            for _ in range(10):
                c = self.clause(dom, positive)
                if c.split()[:2] not in [o.split()[:2] for o in out]:
                    break
            out.append(c)
        return out

    def contrast(self, dom, positive: bool) -> str:
        # The label always follows the final clause: c2 carries it, c1 says the opposite.
        c1, c2 = self.clauses(dom, [not positive, positive])
        tpl = self.pick(CONTRASTS)
        if tpl.startswith("{c1}"):
            c1 = cap(c1)
        return tpl.format(c1=c1, c2=c2)


def generate(seed: int = SEED) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    gen = Generator(seed)
    pools: dict[str, dict[str, str]] = {
        "positive": {},
        "negative": {},
    }  # text -> kind, insertion-ordered
    seen_lower: set[str] = set()
    for _ in range(200_000):
        if all(len(p) >= PER_LABEL for p in pools.values()):
            break
        label = gen.pick(["positive", "negative"])
        if len(pools[label]) >= PER_LABEL:
            continue
        text, kind = gen.sentence(label == "positive")
        n_words = len(text.split())
        key = text.lower()
        if key in seen_lower or not MIN_WORDS <= n_words <= MAX_WORDS:
            continue
        seen_lower.add(key)
        pools[label][text] = kind
    else:
        raise RuntimeError("templates too narrow: could not reach PER_LABEL unique sentences")
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    for label in ("negative", "positive"):
        texts = list(pools[label])
        gen.rng.shuffle(texts)
        test += [(t, label) for t in texts[:TEST_PER_LABEL]]
        train += [(t, label) for t in texts[TEST_PER_LABEL:]]
    gen.rng.shuffle(train)
    gen.rng.shuffle(test)
    return train, test


def write(rows: list[tuple[str, str]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)


def main() -> None:
    train, test = generate()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write(train, OUT_DIR / "sentiment_train.csv")
    write(test, OUT_DIR / "sentiment_test.csv")
    lengths = [len(t.split()) for t, _ in train + test]
    print(
        f"train {len(train)}, test {len(test)}, words {min(lengths)}-{max(lengths)}, "
        f"mean {sum(lengths) / len(lengths):.1f} -> {OUT_DIR}"
    )


if __name__ == "__main__":
    main()
