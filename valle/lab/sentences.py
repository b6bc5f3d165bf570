"""A seeded generator of varied English sentences: the text of the lab corpus.

No text corpus is copied: the word lists and sentence patterns below are written for this
project. A small phrase-structure grammar (statements, questions, commands, compound and
complex sentences, with subject-verb agreement, tenses and plurals) yields millions of
distinct sentences; `generate_sentences` draws as many unique ones as asked for, the same
ones for the same seed.

Sentences use only letters, spaces, apostrophes and the punctuation , . ? ! so that the
spoken words are exactly the transcript (espeak reads no digits, abbreviations or symbols).
"""

from __future__ import annotations

import random
import re

# ---------------------------------------------------------------------------------------
# Word lists. Nouns: (singular, plural). Verbs: (base, third person singular, past).
# ---------------------------------------------------------------------------------------
PEOPLE = [
    ("farmer", "farmers"), ("teacher", "teachers"), ("doctor", "doctors"), ("child", "children"),
    ("sailor", "sailors"), ("painter", "painters"), ("baker", "bakers"), ("student", "students"),
    ("driver", "drivers"), ("neighbour", "neighbours"), ("stranger", "strangers"),
    ("musician", "musicians"), ("gardener", "gardeners"), ("pilot", "pilots"), ("nurse", "nurses"),
    ("soldier", "soldiers"), ("writer", "writers"), ("scientist", "scientists"),
    ("fisherman", "fishermen"), ("woman", "women"), ("man", "men"), ("girl", "girls"),
    ("boy", "boys"), ("judge", "judges"), ("merchant", "merchants"), ("traveller", "travellers"),
    ("singer", "singers"), ("carpenter", "carpenters"), ("librarian", "librarians"),
    ("captain", "captains"), ("cook", "cooks"), ("engineer", "engineers"), ("king", "kings"),
    ("queen", "queens"), ("guard", "guards"), ("hunter", "hunters"), ("poet", "poets"),
]
ANIMALS = [
    ("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("fox", "foxes"), ("rabbit", "rabbits"),
    ("owl", "owls"), ("goat", "goats"), ("sheep", "sheep"), ("bird", "birds"), ("mouse", "mice"),
    ("wolf", "wolves"), ("duck", "ducks"), ("bear", "bears"), ("frog", "frogs"), ("tiger", "tigers"),
    ("donkey", "donkeys"), ("whale", "whales"), ("crow", "crows"), ("squirrel", "squirrels"),
]
THINGS = [
    ("book", "books"), ("letter", "letters"), ("box", "boxes"), ("lamp", "lamps"), ("key", "keys"),
    ("basket", "baskets"), ("chair", "chairs"), ("table", "tables"), ("window", "windows"),
    ("door", "doors"), ("coat", "coats"), ("hat", "hats"), ("map", "maps"), ("song", "songs"),
    ("story", "stories"), ("apple", "apples"), ("loaf", "loaves"), ("cup", "cups"),
    ("bottle", "bottles"), ("candle", "candles"), ("ladder", "ladders"), ("rope", "ropes"),
    ("wheel", "wheels"), ("bell", "bells"), ("clock", "clocks"), ("picture", "pictures"),
    ("ticket", "tickets"), ("blanket", "blankets"), ("bicycle", "bicycles"), ("kettle", "kettles"),
    ("mirror", "mirrors"), ("pencil", "pencils"), ("umbrella", "umbrellas"), ("drum", "drums"),
    ("shoe", "shoes"), ("stone", "stones"), ("feather", "feathers"), ("coin", "coins"),
    ("boat", "boats"), ("wagon", "wagons"), ("parcel", "parcels"), ("garden", "gardens"),
]
PLACES = [
    "the market", "the river", "the old bridge", "the station", "the harbour", "the village",
    "the forest", "the library", "the kitchen", "the mountain", "the school", "the beach",
    "the castle", "the museum", "the church", "the valley", "the city", "the farm", "the island",
    "the square", "the garden", "the hospital", "the bakery", "the tower", "the meadow",
    "the hotel", "the factory", "the lake", "the desert", "the cottage", "the office", "the park",
]
PERSON_NAMES = [
    "Anna", "Peter", "Maria", "James", "Sophie", "Thomas", "Emma", "Oliver", "Clara", "Henry",
    "Lucy", "Daniel", "Grace", "Samuel", "Alice", "Robert", "Helen", "Martin", "Rose", "Victor",
    "Laura", "George", "Nora", "Simon", "Julia", "Edward", "Ruth", "Arthur", "Eva", "Frank",
]
ADJECTIVES = [
    "small", "large", "old", "young", "quiet", "noisy", "bright", "dark", "heavy", "light",
    "warm", "cold", "clever", "tired", "happy", "angry", "gentle", "strange", "careful", "brave",
    "busy", "lazy", "polite", "curious", "golden", "wooden", "broken", "shiny", "dusty", "tiny",
    "enormous", "patient", "hungry", "lonely", "proud", "friendly", "nervous", "ancient",
    "red", "blue", "green", "yellow", "silver", "white", "black", "purple", "brown", "grey",
]
# Verbs taking an object: (base, third singular, past).
TRANSITIVE_VERBS = [
    ("carry", "carries", "carried"), ("find", "finds", "found"), ("open", "opens", "opened"),
    ("paint", "paints", "painted"), ("sell", "sells", "sold"), ("buy", "buys", "bought"),
    ("watch", "watches", "watched"), ("follow", "follows", "followed"), ("lose", "loses", "lost"),
    ("bring", "brings", "brought"), ("hide", "hides", "hid"), ("clean", "cleans", "cleaned"),
    ("fix", "fixes", "fixed"), ("borrow", "borrows", "borrowed"), ("draw", "draws", "drew"),
    ("catch", "catches", "caught"), ("push", "pushes", "pushed"), ("pull", "pulls", "pulled"),
    ("wash", "washes", "washed"), ("read", "reads", "read"), ("remember", "remembers", "remembered"),
    ("forget", "forgets", "forgot"), ("visit", "visits", "visited"), ("admire", "admires", "admired"),
    ("climb", "climbs", "climbed"), ("throw", "throws", "threw"), ("keep", "keeps", "kept"),
    ("build", "builds", "built"), ("describe", "describes", "described"), ("love", "loves", "loved"),
    ("count", "counts", "counted"), ("guard", "guards", "guarded"), ("share", "shares", "shared"),
]
# Verbs without an object: (base, third singular, past).
INTRANSITIVE_VERBS = [
    ("sleep", "sleeps", "slept"), ("laugh", "laughs", "laughed"), ("sing", "sings", "sang"),
    ("wait", "waits", "waited"), ("run", "runs", "ran"), ("dance", "dances", "danced"),
    ("whisper", "whispers", "whispered"), ("smile", "smiles", "smiled"), ("travel", "travels", "travelled"),
    ("listen", "listens", "listened"), ("rest", "rests", "rested"), ("work", "works", "worked"),
    ("swim", "swims", "swam"), ("shout", "shouts", "shouted"), ("wander", "wanders", "wandered"),
    ("hurry", "hurries", "hurried"), ("cough", "coughs", "coughed"), ("arrive", "arrives", "arrived"),
    ("return", "returns", "returned"), ("disappear", "disappears", "disappeared"),
]
ADVERBS = [
    "slowly", "quickly", "quietly", "loudly", "carefully", "happily", "suddenly", "gently",
    "proudly", "nervously", "patiently", "eagerly", "calmly", "bravely", "politely", "secretly",
]
TIMES = [
    "this morning", "last night", "every evening", "on Sunday", "at noon", "yesterday",
    "tomorrow", "in the winter", "after dinner", "before sunrise", "later today", "once a week",
    "in the spring", "at midnight", "on Monday", "during the storm", "next summer", "at dawn",
]
PREPOSITIONS = ["near", "behind", "beside", "inside", "under", "above", "across", "around", "beyond"]
WEATHER = [
    "it is raining", "the wind is strong", "the sun is shining", "it snowed all night",
    "the sky is clear", "a storm is coming", "the fog is thick", "it was very hot",
]
FEELINGS = ["glad", "sorry", "surprised", "certain", "afraid", "sure", "pleased", "worried"]
NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty"]
CONNECTIVES = ["and", "but", "so", "because", "while", "although", "until", "when"]


class SentenceGrammar:
    """Random English sentences from a small grammar, driven by one `random.Random`."""

    def __init__(self, seed: int = 0):
        self.rng = random.Random(seed)

    def pick(self, items):
        return self.rng.choice(items)

    # --- noun phrases -------------------------------------------------------------------
    def noun_phrase(self, plural: bool = False, allow_name: bool = True) -> str:
        rng = self.rng
        kind = rng.random()
        if allow_name and not plural and kind < 0.15:
            return self.pick(PERSON_NAMES)
        nouns = self.pick([PEOPLE, ANIMALS, THINGS] if kind < 0.7 else [PEOPLE, ANIMALS])
        noun = self.pick(nouns)[1 if plural else 0]
        if plural:
            determiner = self.pick(["the", "some", "many", "those", "these", "a few", "our", self.pick(NUMBER_WORDS)])
        else:
            determiner = self.pick(["the", "a", "this", "that", "my", "your", "her", "his", "every", "our"])
        adjectives = []
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            adjective = self.pick(ADJECTIVES)
            if adjective not in adjectives:
                adjectives.append(adjective)
        words = [determiner] + adjectives + [noun]
        if determiner == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        phrase = " ".join(words)
        if rng.random() < 0.12:
            phrase += f" {self.pick(PREPOSITIONS)} {self.pick(PLACES)}"
        return phrase

    def object_phrase(self) -> str:
        plural = self.rng.random() < 0.35
        return self.noun_phrase(plural=plural)

    # --- verb phrases -------------------------------------------------------------------
    def verb_phrase(self, plural_subject: bool, tense: str) -> str:
        rng = self.rng
        transitive = rng.random() < 0.6
        verb = self.pick(TRANSITIVE_VERBS if transitive else INTRANSITIVE_VERBS)
        if tense == "past":
            words = [verb[2]]
        elif tense == "present":
            words = [verb[0] if plural_subject else verb[1]]
        elif tense == "future":
            words = ["will", verb[0]]
        elif tense == "progressive":
            words = ["are" if plural_subject else "is", _ing(verb[0])]
        else:  # modal
            words = [self.pick(["can", "should", "might", "must", "could", "would"]), verb[0]]
        if transitive:
            words.append(self.object_phrase())
        if rng.random() < 0.3:
            words.append(self.pick(ADVERBS))
        if rng.random() < 0.35:
            words.append(f"{self.pick(['at', 'near', 'behind', 'beside', 'inside', 'across'])} {self.pick(PLACES)}")
        if rng.random() < 0.25:
            words.append(self.pick(TIMES))
        return " ".join(words)

    def clause(self) -> str:
        plural = self.rng.random() < 0.35
        subject = self.noun_phrase(plural=plural)
        tense = self.pick(["past", "past", "present", "future", "progressive", "modal"])
        return f"{subject} {self.verb_phrase(plural, tense)}"

    # --- sentence patterns --------------------------------------------------------------
    def statement(self) -> str:
        return _capitalise(self.clause()) + "."

    def compound(self) -> str:
        return _capitalise(f"{self.clause()}, {self.pick(CONNECTIVES)} {self.clause()}") + "."

    def question(self) -> str:
        rng = self.rng
        kind = rng.random()
        plural = rng.random() < 0.3
        subject = self.noun_phrase(plural=plural)
        verb = self.pick(TRANSITIVE_VERBS)
        if kind < 0.35:
            auxiliary = "do" if plural else "does"
            return _capitalise(f"why {auxiliary} {subject} {verb[0]} {self.object_phrase()}") + "?"
        if kind < 0.6:
            return _capitalise(f"did {subject} {verb[0]} {self.object_phrase()} {self.pick(TIMES)}") + "?"
        if kind < 0.8:
            return _capitalise(f"where {'are' if plural else 'is'} {subject} going with {self.object_phrase()}") + "?"
        return _capitalise(f"who {verb[2]} {self.object_phrase()} {self.pick(PREPOSITIONS)} {self.pick(PLACES)}") + "?"

    def command(self) -> str:
        verb = self.pick(TRANSITIVE_VERBS)
        tail = f" {self.pick(ADVERBS)}" if self.rng.random() < 0.4 else ""
        ending = "!" if self.rng.random() < 0.4 else "."
        lead = "please " if self.rng.random() < 0.3 else ""
        return _capitalise(f"{lead}{verb[0]} {self.object_phrase()}{tail}") + ending

    def remark(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.3:
            return _capitalise(f"{self.pick(WEATHER)}, so {self.clause()}") + "."
        if kind < 0.55:
            return f"I am {self.pick(FEELINGS)} that {self.clause()}."
        if kind < 0.75:
            return f"{self.pick(PERSON_NAMES)} said that {self.clause()}."
        if kind < 0.9:
            return _capitalise(f"{self.pick(TIMES)}, {self.clause()}") + "."
        return f"We don't know whether {self.clause()}."

    def sentence(self) -> str:
        pattern = self.rng.choices(
            [self.statement, self.compound, self.question, self.command, self.remark],
            weights=[30, 25, 15, 10, 20],
        )[0]
        return pattern()


def _ing(verb: str) -> str:
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    if verb in {"run", "swim", "shop"}:
        return verb + verb[-1] + "ing"
    return verb + "ing"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def generate_sentences(count: int, seed: int = 0, min_words: int = 3, max_words: int = 24) -> list[str]:
    """`count` distinct sentences of `min_words`..`max_words` words, the same for the same seed."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"generate_sentences: count must be a positive integer, got {count!r}.")
    if not 1 <= min_words <= max_words:
        raise ValueError(
            f"generate_sentences: need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}."
        )
    grammar = SentenceGrammar(seed)
    seen: set[str] = set()
    sentences: list[str] = []
    attempts = 0
    while len(sentences) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(
                f"generate_sentences: found only {len(sentences)} distinct sentences of {min_words}-{max_words} "
                f"words after {attempts} tries; widen the word range or ask for fewer."
            )
        sentence = grammar.sentence()
        n_words = len(sentence.split())
        if n_words < min_words or n_words > max_words or sentence in seen:
            continue
        seen.add(sentence)
        sentences.append(sentence)
    return sentences


def normalize_transcript(text: str) -> str:
    """Lower case, letters, apostrophes and single spaces: what the recogniser is scored on."""
    text = text.lower()
    text = re.sub(r"[^a-z' ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()
