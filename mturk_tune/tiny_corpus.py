"""English-like training text for the built-in offline model.

A small template grammar writes short product/place reviews and fairy-tale stories from a fixed word list.
The built-in tiny model (see models.py) learns this text in a few hundred steps, so that with no download it
writes sentences a person can read and rate: "The staff was friendly and the room was clean."

Topics keep their own nouns and adjectives, so a prompt that names a topic ("Write a short review of a
hotel.") steers the continuation towards that topic, and generations vary with the prompt.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A thing that can be reviewed: its name, what one does with it, and what one can say about it."""

    name: str
    visit: str  # past-tense verb phrase: "stayed at", "ate at"
    aspects: tuple[str, ...]
    good: tuple[str, ...]
    bad: tuple[str, ...]
    people: str  # who serves you there


TOPICS: tuple[Topic, ...] = (
    Topic("hotel", "stayed at", ("room", "bed", "breakfast", "view", "pool", "bathroom", "lobby"),
          ("clean", "quiet", "comfortable", "spacious", "lovely"), ("dirty", "noisy", "small", "old", "cold"), "staff"),
    Topic("restaurant", "ate at", ("food", "soup", "pasta", "dessert", "menu", "table", "wine"),
          ("delicious", "fresh", "tasty", "warm", "perfect"), ("bland", "cold", "salty", "greasy", "stale"), "waiter"),
    Topic("coffee shop", "went to", ("coffee", "tea", "cake", "music", "chairs", "latte"),
          ("strong", "cozy", "fresh", "sweet", "lovely"), ("bitter", "weak", "stale", "loud", "cold"), "barista"),
    Topic("movie", "watched", ("story", "ending", "music", "acting", "plot", "dialogue"),
          ("moving", "funny", "clever", "beautiful", "exciting"), ("boring", "slow", "silly", "confusing", "dull"), "cast"),
    Topic("book", "read", ("story", "ending", "characters", "writing", "plot", "cover"),
          ("gripping", "clever", "beautiful", "moving", "charming"), ("boring", "slow", "confusing", "flat", "dull"), "author"),
    Topic("phone", "bought", ("screen", "battery", "camera", "speaker", "case", "price"),
          ("bright", "fast", "sharp", "solid", "reliable"), ("weak", "slow", "cheap", "fragile", "dim"), "seller"),
    Topic("laptop", "bought", ("keyboard", "screen", "battery", "fan", "charger", "price"),
          ("fast", "light", "quiet", "solid", "reliable"), ("heavy", "slow", "noisy", "cheap", "hot"), "seller"),
    Topic("park", "walked in", ("trees", "paths", "lake", "benches", "flowers", "playground"),
          ("green", "peaceful", "clean", "beautiful", "quiet"), ("dirty", "crowded", "noisy", "muddy", "dull"), "gardener"),
    Topic("museum", "visited", ("paintings", "guide", "exhibit", "garden", "shop", "cafe"),
          ("fascinating", "beautiful", "quiet", "clever", "charming"), ("crowded", "boring", "dark", "small", "dull"), "guide"),
    Topic("bakery", "went to", ("bread", "cake", "cookies", "pie", "coffee", "croissant"),
          ("fresh", "warm", "sweet", "soft", "delicious"), ("stale", "dry", "burnt", "bland", "hard"), "baker"),
    Topic("train", "took", ("seats", "ride", "window", "ticket", "station", "food"),
          ("smooth", "quiet", "clean", "comfortable", "fast"), ("late", "crowded", "dirty", "slow", "noisy"), "conductor"),
    Topic("concert", "went to", ("music", "band", "singer", "sound", "crowd", "lights"),
          ("amazing", "loud", "beautiful", "exciting", "moving"), ("boring", "quiet", "short", "muddy", "dull"), "band"),
)

PERSON_GOOD = ("friendly", "kind", "helpful", "polite", "patient", "cheerful")
PERSON_BAD = ("rude", "slow", "careless", "grumpy", "busy", "unhelpful")
WHEN = ("last week", "last month", "yesterday", "on Sunday", "on Friday night", "in the summer", "last winter")
WHO = ("my wife", "my husband", "my friends", "my family", "my sister", "my brother", "my parents", "a friend")
STARS = ("one star", "two stars", "three stars", "four stars", "five stars")

CHARACTERS = ("fox", "rabbit", "girl", "boy", "king", "queen", "dragon", "farmer", "bear", "cat", "owl", "mouse")
CHAR_ADJ = ("little", "brave", "tiny", "clever", "shy", "happy", "lonely", "young", "curious", "kind")
PLACES = ("a small village", "a dark forest", "a big castle", "a quiet farm", "a tall tower", "a green valley",
          "an old house")
HABITS = ("walked to the river", "sang a song", "baked bread", "read a book", "looked at the stars",
          "played in the garden", "fed the birds", "counted the clouds")
FINDS = ("a golden key", "a lost puppy", "a magic stone", "a secret door", "an old map", "a tiny bird", "a shiny coin")
FEELINGS = ("happy", "surprised", "scared", "curious", "proud", "sad", "excited")
FRIENDS = ("a wise owl", "a funny frog", "a kind giant", "a small mouse", "an old wizard", "a friendly bear")
ENDINGS = ("they became best friends", "everyone in the village was happy", "the king gave a big party",
           "the forest was safe again", "they lived happily ever after", "the stars shone brighter than ever")


def _review(rng: random.Random, topic: Topic) -> str:
    mood = rng.choice(("good", "bad", "mixed"))
    aspects = rng.sample(topic.aspects, 3)
    good, bad = topic.good, topic.bad
    sentences = [rng.choice((
        f"I {topic.visit} this {topic.name} {rng.choice(WHEN)}.",
        f"We {topic.visit} the {topic.name} with {rng.choice(WHO)} {rng.choice(WHEN)}.",
        f"I {topic.visit} the {topic.name} with {rng.choice(WHO)}.",
    ))]
    if mood == "good":
        sentences += [
            f"The {aspects[0]} was {rng.choice(good)} and the {aspects[1]} was {rng.choice(good)}.",
            rng.choice((f"The {topic.people} was {rng.choice(PERSON_GOOD)}.", f"I loved the {aspects[2]}.",
                        f"The {aspects[2]} was really {rng.choice(good)}.")),
            rng.choice((f"I would recommend it to {rng.choice(WHO)}.", "We will come back soon.",
                        f"I give it {rng.choice(STARS[3:])}.")),
        ]
    elif mood == "bad":
        sentences += [
            f"The {aspects[0]} was {rng.choice(bad)} and the {aspects[1]} was {rng.choice(bad)}.",
            rng.choice((f"The {topic.people} was {rng.choice(PERSON_BAD)}.", f"I did not like the {aspects[2]}.",
                        f"Sadly the {aspects[2]} was {rng.choice(bad)}.")),
            rng.choice(("I will not come back.", "It was a waste of money.",
                        f"I give it {rng.choice(STARS[:2])}.")),
        ]
    else:
        sentences += [
            f"The {aspects[0]} was {rng.choice(good)}, but the {aspects[1]} was {rng.choice(bad)}.",
            rng.choice((f"The {topic.people} was {rng.choice(PERSON_GOOD)}.", f"The {aspects[2]} was fine.")),
            rng.choice(("It was not bad for the price.", f"I give it {rng.choice(STARS[2:4])}.")),
        ]
    # Reviews differ in length, so the model learns to stop (EOS) after a variable number of sentences.
    keep = rng.choice((2, 3, 4, 4))
    return " ".join(sentences[:keep])


def _story(rng: random.Random, character: str) -> str:
    adj = rng.choice(CHAR_ADJ)
    return " ".join((
        f"Once upon a time there was a {adj} {character} who lived in {rng.choice(PLACES)}.",
        f"Every morning the {character} {rng.choice(HABITS)}.",
        f"One day the {character} found {rng.choice(FINDS)}.",
        f"The {character} was {rng.choice(FEELINGS)} and went to see {rng.choice(FRIENDS)}.",
        f"In the end {rng.choice(ENDINGS)}.",
    ))


def _text(rng: random.Random) -> str:
    if rng.random() < 0.7:
        topic = rng.choice(TOPICS)
        body = _review(rng, topic)
        header = rng.choice((
            "", "", f"Review of the {topic.name}: ", f"Write a short review of a {topic.name}. ",
            f"Write a review of the {topic.name}. ",
        ))
    else:
        character = rng.choice(CHARACTERS)
        body = _story(rng, character)
        header = rng.choice(("", f"Tell a short story about a {character}. ", "Tell me a story. ",
                             f"Write a story about a {character}. "))
    return header + body


def corpus(n_texts: int, seed: int = 0) -> list[str]:
    """`n_texts` short reviews and stories, the same list for the same seed."""
    rng = random.Random(seed)
    return [_text(rng) for _ in range(n_texts)]


def vocabulary() -> frozenset[str]:
    """Every lower-cased word the grammar can write (for checking that generations are word-like)."""
    words: set[str] = set()
    # 3,000 texts draw every choice of the grammar many times over (checked against 20,000).
    for text in corpus(3000, seed=12345):
        words.update(words_of(text))
    return frozenset(words)


def words_of(text: str) -> list[str]:
    """Lower-cased words in `text`, punctuation dropped."""
    return re.findall(r"[a-z]+", text.lower())
