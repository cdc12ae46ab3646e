"""Deterministic demo data: an item catalog, demo users and their event histories.

The service ships no data files: the demo generates its data here, from code and a fixed seed,
so every run sees the same items, users and events.

* The catalog has 12 clearly distinct topics with 28 items each. Titles and texts combine
  per-topic subjects with format templates ("documentary", "podcast episode", "course", ...)
  and use topic vocabulary, so a sentence embedding model groups items by topic. Every item
  is tagged with its topic label and a finer sub-category.
* The users are designed to exercise profiles, drift detection and recommendations: some keep
  one interest (optionally with ~10% noise from a second topic), some switch topic once, one
  goes A -> B -> A and one drifts gradually from A to B. Each ``DemoUser`` records where its
  interest shifts (``shift_at``, event indexes), so drift detection can be checked against it.
* Events come in short engagements: a user views an item, may click it, and may then like,
  rate or purchase it, minutes apart. All events of one user on one item form one engagement;
  a user never comes back to an item later. A user sees at most 20 of a topic's 28 items
  where the plan allows, so every interest keeps unseen items to recommend.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import cycle, groupby, islice
from typing import NamedTuple

__all__ = [
    "TOPICS",
    "DemoEvent",
    "DemoItem",
    "DemoUser",
    "demo_catalog",
    "demo_events",
    "demo_users",
]


@dataclass(frozen=True)
class DemoItem:
    item_id: str
    title: str
    text: str
    categories: list[str]  # [topic label, sub-category]


@dataclass(frozen=True)
class DemoEvent:
    event_id: str
    user_id: str
    item_id: str
    type: str  # "view", "click", "like", "rate" or "purchase"
    ts: float  # epoch seconds (UTC)
    value: float | None  # rating 1..5 for "rate", else None


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    description: str
    segments: list[tuple[str, int]]  # (topic label, number of events), in time order
    shift_at: list[int]  # 0-based indexes into the user's time-sorted events; [] if stable


# --------------------------------------------------------------------------------------------
# Catalog content
# --------------------------------------------------------------------------------------------


class _Subject(NamedTuple):
    name: str
    subcategory: str


class _Format(NamedTuple):
    title: str  # "{s}" is the subject; the result is title-cased
    lead: str  # opens the item text; followed by a topic detail clause


class _Topic(NamedTuple):
    label: str
    slug: str
    subjects: tuple[_Subject, ...]
    formats: tuple[_Format, ...]  # topic-specific, used on top of the generic ones
    details: tuple[str, ...]  # clauses that finish the first sentence
    audiences: tuple[str, ...]  # second sentences


ITEMS_PER_TOPIC = 28

SPACE = "Space & Astronomy"
COOKING = "Italian Cooking"
JAZZ = "Jazz"
HIKING = "Hiking & Outdoors"
MACHINE_LEARNING = "Machine Learning"
GARDENING = "Gardening"
PHOTOGRAPHY = "Photography"
FOOTBALL = "Football"
ANCIENT_HISTORY = "Ancient History"
FINANCE = "Personal Finance"
VIDEO_GAMES = "Video Games"
YOGA = "Yoga & Meditation"

_GENERIC_FORMATS = (
    _Format("{s}: a beginner's guide", "A friendly beginner's guide to {s}"),
    _Format("the story of {s}", "A documentary that tells the story of {s}"),
    _Format("{s}, explained", "A short explainer video on {s}"),
    _Format("deep dive: {s}", "A podcast episode taking a deep dive into {s}"),
    _Format("{s}: the complete course", "A complete online course on {s}"),
    _Format("the little book of {s}", "A compact illustrated book about {s}"),
    _Format("{s}: myths and facts", "A myth-busting article about {s}"),
    _Format("rethinking {s}", "An opinionated essay rethinking {s}"),
)


def _subjects(by_subcategory: dict[str, tuple[str, ...]]) -> tuple[_Subject, ...]:
    return tuple(
        _Subject(name, subcategory)
        for subcategory, names in by_subcategory.items()
        for name in names
    )


_TOPIC_SPECS = (
    _Topic(
        label=SPACE,
        slug="space",
        subjects=_subjects(
            {
                "Planetary Science": (
                    "Mars rovers",
                    "the moons of Jupiter",
                    "Saturn's rings",
                    "asteroids and comets",
                ),
                "Deep Space": (
                    "black holes",
                    "neutron stars",
                    "distant galaxies",
                    "exoplanets",
                    "the James Webb telescope",
                ),
                "Spaceflight": (
                    "the Apollo moon landings",
                    "the International Space Station",
                    "reusable rockets",
                ),
            }
        ),
        formats=(
            _Format("stargazing night: {s}", "A guided stargazing night focused on {s}"),
            _Format("mission briefing: {s}", "A space agency mission briefing on {s}"),
            _Format("cosmic frontiers: {s}", "A planetarium show about {s}"),
        ),
        details=(
            "covering telescopes, orbits and the physics of stars and planets",
            "explaining what astronomers have learned about the cosmos and our solar system",
            "with stunning images from space probes, observatories and orbiting telescopes",
            "tracing how astronauts, rockets and space missions changed our view of the universe",
            "from the Big Bang to the night sky you can see from your backyard",
        ),
        audiences=(
            "A great pick for stargazers and anyone curious about outer space.",
            "Perfect for amateur astronomers who own a telescope.",
            "Ideal for fans of NASA missions and space exploration.",
            "Written for curious minds who love astrophysics without heavy maths.",
            "Recommended for anyone who looks up at the stars and wonders.",
        ),
    ),
    _Topic(
        label=COOKING,
        slug="cooking",
        subjects=_subjects(
            {
                "Pasta & Risotto": (
                    "fresh egg pasta",
                    "spaghetti carbonara",
                    "potato gnocchi",
                    "risotto alla milanese",
                ),
                "Regional Classics": (
                    "ragù bolognese",
                    "osso buco",
                    "homemade pesto",
                    "Tuscan bean soup",
                ),
                "Breads & Desserts": (
                    "Neapolitan pizza",
                    "Ligurian focaccia",
                    "tiramisu",
                    "Sicilian cannoli",
                ),
            }
        ),
        formats=(
            _Format("{s} cooking class", "A hands-on cooking class teaching {s}"),
            _Format("nonna's recipes: {s}", "A family recipe collection built around {s}"),
            _Format(
                "trattoria secrets: {s}",
                "A cooking show episode from a Bologna trattoria featuring {s}",
            ),
        ),
        details=(
            "with step-by-step recipes, fresh ingredients and tips from Italian kitchens",
            "covering olive oil, parmesan, garlic and the secrets of a slow-simmered sauce",
            "showing how Italian grandmothers cook, knead dough and serve a family dinner",
            "exploring regional Italian cuisine from Naples and Sicily to Bologna and Milan",
            "with recipes for weeknight dinners, Sunday lunches and classic trattoria dishes",
        ),
        audiences=(
            "Perfect for home cooks who love pasta, pizza and Mediterranean food.",
            "A delicious choice for anyone learning to cook authentic Italian recipes.",
            "Great for food lovers planning a dinner party with Italian flavours.",
            "Ideal for beginners who want to cook like a chef in a Roman trattoria.",
            "Recommended for foodies who enjoy wine, cheese and homemade bread.",
        ),
    ),
    _Topic(
        label=JAZZ,
        slug="jazz",
        subjects=_subjects(
            {
                "Jazz Styles": ("bebop", "cool jazz", "modal jazz", "jazz fusion"),
                "Jazz History": (
                    "big band swing",
                    "the Blue Note label",
                    "Miles Davis",
                    "John Coltrane",
                    "New Orleans jazz",
                ),
                "Playing Jazz": ("jazz improvisation", "jazz piano voicings", "walking bass lines"),
            }
        ),
        formats=(
            _Format("late night sessions: {s}", "A late-night jazz radio hour devoted to {s}"),
            _Format("liner notes on {s}", "A collection of record liner notes on {s}"),
            _Format("{s} masterclass", "A masterclass with a touring jazz musician on {s}"),
        ),
        details=(
            "featuring saxophone solos, swinging drummers and classic jazz records",
            "exploring improvisation, chord changes and the sound of the jazz club",
            "with listening notes on trumpet, piano and double bass legends",
            "tracing jazz musicians from smoky nightclubs to legendary studio sessions",
            "covering swing rhythm, blue notes and the art of the jam session",
        ),
        audiences=(
            "Essential listening for jazz fans and record collectors.",
            "Great for musicians who want to improvise over jazz standards.",
            "A treat for anyone who loves vinyl, saxophones and late-night music.",
            "Perfect for newcomers wondering where to start with jazz albums.",
            "Recommended for fans of live music and jazz festivals.",
        ),
    ),
    _Topic(
        label=HIKING,
        slug="hiking",
        subjects=_subjects(
            {
                "Trails & Routes": (
                    "alpine trails",
                    "the Appalachian Trail",
                    "desert canyon hikes",
                    "ridge scrambles",
                    "long-distance thru-hiking",
                ),
                "Skills & Gear": (
                    "lightweight backpacking gear",
                    "map and compass navigation",
                    "wilderness first aid",
                    "winter snowshoeing",
                ),
                "Camping & Trekking": ("wild camping", "hut-to-hut trekking", "trail running"),
            }
        ),
        formats=(
            _Format("trailhead guide: {s}", "A trailhead guide with route notes on {s}"),
            _Format("into the wild: {s}", "An outdoor adventure film about {s}"),
            _Format("{s} weekend workshop", "A weekend outdoor skills workshop on {s}"),
        ),
        details=(
            "covering trail maps, elevation gain and choosing the right hiking boots",
            "with advice on campsites, water filters and staying safe in the backcountry",
            "exploring mountain paths, forest trails and breathtaking summit views",
            "explaining how to plan a multi-day trek through national parks and wilderness",
            "with tips on backpacks, tents, weather and leave-no-trace outdoor ethics",
        ),
        audiences=(
            "Perfect for hikers, backpackers and weekend adventurers.",
            "Great for anyone planning their first overnight camping trip.",
            "Ideal for outdoor lovers who feel at home on a mountain trail.",
            "Recommended for trekkers preparing for a long-distance walk.",
            "A must for nature lovers who want to explore the wilderness safely.",
        ),
    ),
    _Topic(
        label=MACHINE_LEARNING,
        slug="ml",
        subjects=_subjects(
            {
                "Deep Learning": (
                    "neural networks",
                    "transformers and attention",
                    "convolutional networks",
                    "reinforcement learning",
                ),
                "Classical ML": (
                    "gradient boosting",
                    "decision trees",
                    "support vector machines",
                    "clustering algorithms",
                ),
                "ML Engineering": (
                    "feature engineering",
                    "model evaluation",
                    "MLOps pipelines",
                    "hyperparameter tuning",
                ),
            }
        ),
        formats=(
            _Format("{s} in Python", "A Python coding tutorial on {s}"),
            _Format("paper walkthrough: {s}", "A research paper walkthrough about {s}"),
            _Format("Kaggle notebook: {s}", "A Kaggle notebook demonstrating {s}"),
        ),
        details=(
            "covering training data, loss functions and gradient descent in Python",
            "with code examples in PyTorch and scikit-learn for real prediction tasks",
            "explaining how models learn from data, overfit and generalise",
            "walking through datasets, algorithms and accuracy metrics step by step",
            "showing how data scientists train, validate and deploy machine learning models",
        ),
        audiences=(
            "Ideal for data scientists and software engineers moving into AI.",
            "Great for students learning statistics, algorithms and artificial intelligence.",
            "Recommended for practitioners who build predictive models at work.",
            "Perfect for programmers curious about how AI models really work.",
            "A solid resource for anyone preparing for a machine learning interview.",
        ),
    ),
    _Topic(
        label=GARDENING,
        slug="gardening",
        subjects=_subjects(
            {
                "Fruit & Vegetables": (
                    "heirloom tomatoes",
                    "raised vegetable beds",
                    "herb gardens",
                    "fruit trees",
                    "seed starting",
                ),
                "Flowers & Plants": (
                    "climbing roses",
                    "spring bulbs",
                    "succulents and cacti",
                    "houseplants",
                ),
                "Garden Care": ("composting", "organic pest control", "shrub pruning"),
            }
        ),
        formats=(
            _Format("the allotment diaries: {s}", "A gardening diary documenting a season of {s}"),
            _Format(
                "potting shed podcast: {s}",
                "A gardening podcast episode answering questions on {s}",
            ),
            _Format("grow your own: {s}", "A practical gardening handbook on {s}"),
        ),
        details=(
            "covering soil, compost, watering and choosing the right plants for each season",
            "with tips on sowing seeds, planting seedlings and harvesting in the garden",
            "explaining how gardeners feed the soil, attract pollinators and fight weeds",
            "showing flower beds, vegetable patches and greenhouse projects through the year",
            "with advice on sunlight, mulch, fertiliser and keeping plants healthy",
        ),
        audiences=(
            "Perfect for green-fingered gardeners with a backyard or allotment.",
            "Great for beginners growing their first vegetables and flowers.",
            "Ideal for plant lovers who enjoy digging, planting and pruning.",
            "Recommended for anyone turning a balcony into a small garden.",
            "A helpful companion for the spring planting season.",
        ),
    ),
    _Topic(
        label=PHOTOGRAPHY,
        slug="photography",
        subjects=_subjects(
            {
                "Techniques": (
                    "aperture and depth of field",
                    "long-exposure photography",
                    "composition and the rule of thirds",
                    "low-light photography",
                ),
                "Genres": (
                    "portrait lighting",
                    "street photography",
                    "macro photography",
                    "black-and-white photography",
                ),
                "Cameras & Editing": (
                    "prime lenses",
                    "mirrorless cameras",
                    "film cameras",
                    "Lightroom editing",
                ),
            }
        ),
        formats=(
            _Format("photo walk: {s}", "A guided photo walk practising {s}"),
            _Format("behind the lens: {s}", "A photographer interview about {s}"),
            _Format("{s} photo challenge", "A 30-day photo challenge built around {s}"),
        ),
        details=(
            "covering shutter speed, ISO, exposure and how light shapes a photograph",
            "with example photos, camera settings and tips on framing the shot",
            "explaining lenses, sensors, focus and editing raw images",
            "showing how professional photographers compose, shoot and retouch their pictures",
            "with practical assignments to sharpen your eye behind the camera",
        ),
        audiences=(
            "Perfect for photographers who want sharper, better-lit images.",
            "Great for beginners who just bought their first camera.",
            "Ideal for hobbyists building a photography portfolio.",
            "Recommended for anyone who loves cameras, lenses and photo editing.",
            "A useful resource for photographers shooting on DSLR or mirrorless bodies.",
        ),
    ),
    _Topic(
        label=FOOTBALL,
        slug="football",
        subjects=_subjects(
            {
                "Tactics": (
                    "the high press",
                    "the false nine",
                    "zonal marking",
                    "counter-attacking football",
                    "set pieces",
                ),
                "Clubs & Competitions": (
                    "the Champions League",
                    "the World Cup",
                    "the Premier League title race",
                    "local derbies",
                ),
                "Players & Training": ("goalkeeping", "youth academies", "legendary strikers"),
            }
        ),
        formats=(
            _Format("match day analysis: {s}", "A match day tactical analysis of {s}"),
            _Format("the dressing room podcast: {s}", "A football podcast episode debating {s}"),
            _Format("pitchside: {s}", "A sports documentary filmed pitchside about {s}"),
        ),
        details=(
            "with match analysis, formations and the tactics of top football managers",
            "covering goals, penalties, transfers and the drama of the football season",
            "explaining how coaches train players, organise defences and win matches",
            "featuring stadium atmosphere, famous clubs and unforgettable soccer moments",
            "breaking down passing, pressing and finishing on the football pitch",
        ),
        audiences=(
            "Perfect for football fans who never miss a match.",
            "Great for coaches and players at grassroots soccer clubs.",
            "Ideal for supporters who love tactics boards and league tables.",
            "Recommended for anyone following the transfer window and cup finals.",
            "A must for fantasy football managers and match-day pundits.",
        ),
    ),
    _Topic(
        label=ANCIENT_HISTORY,
        slug="history",
        subjects=_subjects(
            {
                "Ancient Rome": (
                    "the Roman Republic",
                    "Julius Caesar",
                    "the Roman legions",
                    "Pompeii",
                ),
                "Ancient Greece": (
                    "Athenian democracy",
                    "the Spartans",
                    "Alexander the Great",
                    "the Trojan War",
                ),
                "Ancient Egypt & Near East": (
                    "the pyramids of Giza",
                    "Cleopatra",
                    "the Babylonians",
                    "Mesopotamian city-states",
                ),
            }
        ),
        formats=(
            _Format("lost empires: {s}", "A history documentary about {s}"),
            _Format("lectures on {s}", "A university lecture series on {s}"),
            _Format("chronicles of {s}", "A narrative history chronicling {s}"),
        ),
        details=(
            "drawing on archaeology, ancient texts and the ruins of temples and empires",
            "covering emperors, pharaohs, battles and the fall of ancient civilisations",
            "explaining how historians read inscriptions, pottery and classical sources",
            "tracing the politics, religion and daily life of the ancient world",
            "with maps of ancient cities, trade routes and military campaigns",
        ),
        audiences=(
            "Perfect for history buffs fascinated by antiquity.",
            "Great for students of classics, archaeology and ancient civilisations.",
            "Ideal for readers who love stories of empires, kings and gods.",
            "Recommended for travellers planning to visit ancient ruins.",
            "A rich resource for anyone curious about the ancient Mediterranean.",
        ),
    ),
    _Topic(
        label=FINANCE,
        slug="finance",
        subjects=_subjects(
            {
                "Budgeting & Saving": (
                    "monthly budgeting",
                    "emergency funds",
                    "credit card debt",
                    "first-home savings",
                    "mortgages",
                ),
                "Investing": (
                    "index funds",
                    "dividend investing",
                    "compound interest",
                    "bonds and interest rates",
                ),
                "Retirement & Tax": (
                    "retirement accounts",
                    "early retirement",
                    "tax-efficient saving",
                ),
            }
        ),
        formats=(
            _Format("the money hour: {s}", "A personal finance radio segment on {s}"),
            _Format("{s} spreadsheet kit", "A budgeting spreadsheet template and guide for {s}"),
            _Format("wealth basics: {s}", "A financial literacy course module on {s}"),
        ),
        details=(
            "covering budgets, savings accounts, debt and building long-term wealth",
            "explaining stocks, bonds, fees and how money grows with compound interest",
            "with worksheets for tracking spending, income and financial goals",
            "showing how to plan for retirement, taxes and a healthy credit score",
            "with practical money tips for salaries, loans and investment portfolios",
        ),
        audiences=(
            "Perfect for anyone who wants to take control of their money.",
            "Great for young professionals starting to save and invest.",
            "Ideal for families planning a budget and paying down debt.",
            "Recommended for readers aiming for financial independence.",
            "A clear guide for beginners confused by banks and brokers.",
        ),
    ),
    _Topic(
        label=VIDEO_GAMES,
        slug="games",
        subjects=_subjects(
            {
                "Game Genres": (
                    "open-world RPGs",
                    "retro platformers",
                    "roguelike games",
                    "competitive shooters",
                    "strategy games",
                ),
                "Game Design": ("indie game development", "level design", "boss fights"),
                "Gaming Culture": (
                    "speedrunning",
                    "esports tournaments",
                    "Nintendo classics",
                    "game soundtracks",
                ),
            }
        ),
        formats=(
            _Format("let's play: {s}", "A let's play video series showcasing {s}"),
            _Format("game dev diary: {s}", "A game developer diary about {s}"),
            _Format("press start: {s}", "A gaming podcast episode about {s}"),
        ),
        details=(
            "covering gameplay, consoles, controllers and the history of video games",
            "with tips from gamers on quests, loot, levels and multiplayer matches",
            "explaining how game studios design characters, worlds and boss battles",
            "featuring PC and console titles, speedruns and gaming communities",
            "breaking down game mechanics, difficulty curves and pixel art",
        ),
        audiences=(
            "Perfect for gamers who love long campaigns and co-op sessions.",
            "Great for aspiring game developers and designers.",
            "Ideal for players on PlayStation, Xbox, Switch or PC.",
            "Recommended for fans of streaming, esports and gaming culture.",
            "A nostalgic treat for anyone who grew up with a game console.",
        ),
    ),
    _Topic(
        label=YOGA,
        slug="yoga",
        subjects=_subjects(
            {
                "Yoga Practice": (
                    "sun salutations",
                    "vinyasa flow",
                    "yin yoga",
                    "hatha yoga",
                    "restorative yoga",
                ),
                "Meditation": (
                    "mindfulness meditation",
                    "loving-kindness meditation",
                    "body scan meditation",
                    "guided visualisation",
                ),
                "Breathwork & Wellbeing": (
                    "pranayama breathing",
                    "back-care yoga",
                    "sleep and relaxation",
                ),
            }
        ),
        formats=(
            _Format("morning practice: {s}", "A twenty-minute morning session of {s}"),
            _Format("the calm retreat: {s}", "A weekend retreat programme centred on {s}"),
            _Format("{s} for beginners", "A gentle beginners' class introducing {s}"),
        ),
        details=(
            "with gentle poses, mindful breathing and time on the yoga mat",
            "guiding you through stretching, balance and calm, focused awareness",
            "explaining how meditation, breath and posture reduce stress and anxiety",
            "with short daily routines for flexibility, inner peace and mindfulness",
            "covering asanas, relaxation techniques and the philosophy of yoga",
        ),
        audiences=(
            "Perfect for anyone seeking calm, balance and better sleep.",
            "Great for beginners rolling out a yoga mat for the first time.",
            "Ideal for busy people who want a daily mindfulness habit.",
            "Recommended for yogis deepening their practice at home.",
            "A soothing companion for stress relief and self-care.",
        ),
    ),
)

TOPICS: list[str] = [topic.label for topic in _TOPIC_SPECS]

_SMALL_WORDS = frozenset({"a", "alla", "an", "and", "for", "from", "in", "of", "on", "the", "to"})


# --------------------------------------------------------------------------------------------
# Catalog generation
# --------------------------------------------------------------------------------------------


def demo_catalog(seed: int = 7) -> list[DemoItem]:
    """All demo items, topic by topic; the same seed always gives the same catalog."""
    rng = random.Random(seed)
    return [item for topic in _TOPIC_SPECS for item in _topic_items(topic, rng)]


def _topic_items(topic: _Topic, rng: random.Random) -> list[DemoItem]:
    pairs = _subject_format_pairs(topic, rng)
    return [
        _make_item(topic, number, subject, fmt, rng)
        for number, (subject, fmt) in enumerate(pairs, start=1)
    ]


def _subject_format_pairs(topic: _Topic, rng: random.Random) -> list[tuple[_Subject, _Format]]:
    """ITEMS_PER_TOPIC distinct (subject, format) pairs, spreading items evenly over subjects."""
    formats = _GENERIC_FORMATS + topic.formats
    subjects = rng.sample(topic.subjects, len(topic.subjects))
    unused_formats = {subject: rng.sample(formats, len(formats)) for subject in subjects}
    return [
        (subject, unused_formats[subject].pop())
        for subject in islice(cycle(subjects), ITEMS_PER_TOPIC)
    ]


def _make_item(
    topic: _Topic, number: int, subject: _Subject, fmt: _Format, rng: random.Random
) -> DemoItem:
    detail = rng.choice(topic.details)
    audience = rng.choice(topic.audiences)
    return DemoItem(
        item_id=f"{topic.slug}-{number:03d}",
        title=_title_case(fmt.title.format(s=subject.name)),
        text=f"{fmt.lead.format(s=subject.name)}, {detail}. {audience}",
        categories=[topic.label, subject.subcategory],
    )


def _title_case(text: str) -> str:
    """Capitalise each word except small ones inside a phrase; keeps inner capitals (MLOps)."""
    words: list[str] = []
    for word in text.split(" "):
        starts_phrase = not words or words[-1].endswith(":")
        keep_small = word in _SMALL_WORDS and not starts_phrase
        words.append(word if keep_small else word[:1].upper() + word[1:])
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _UserSpec:
    user_id: str
    segments: tuple[tuple[str, int], ...]
    noise_topic: str | None = None  # ~NOISE_RATE of the events come from this topic
    gradual: bool = False  # the mix drifts linearly from the first topic to the last


NOISE_RATE = 0.1

_USER_SPECS = (
    _UserSpec("alice", ((SPACE, 60),)),
    _UserSpec("bob", ((COOKING, 54),), noise_topic=GARDENING),
    _UserSpec("carol", ((JAZZ, 45),)),
    _UserSpec("dave", ((MACHINE_LEARNING, 72),), noise_topic=VIDEO_GAMES),
    _UserSpec("erin", ((HIKING, 40), (PHOTOGRAPHY, 40))),
    _UserSpec("frank", ((FOOTBALL, 30), (FINANCE, 30))),
    _UserSpec("grace", ((VIDEO_GAMES, 50), (YOGA, 50))),
    _UserSpec("heidi", ((ANCIENT_HISTORY, 60), (SPACE, 40))),
    _UserSpec("ivan", ((GARDENING, 30), (FOOTBALL, 30), (GARDENING, 30))),
    _UserSpec("judy", ((JAZZ, 40), (COOKING, 40)), gradual=True),
    _UserSpec("ken", ((FINANCE, 40), (MACHINE_LEARNING, 60))),
    _UserSpec("laura", ((YOGA, 40),), noise_topic=HIKING),
)


def demo_users() -> list[DemoUser]:
    """The demo users, with their planned segments and the event indexes where interest shifts."""
    return [_to_user(spec) for spec in _USER_SPECS]


def _to_user(spec: _UserSpec) -> DemoUser:
    return DemoUser(
        user_id=spec.user_id,
        description=_describe(spec),
        segments=list(spec.segments),
        shift_at=_segment_starts(spec)[1:],
    )


def _segment_starts(spec: _UserSpec) -> list[int]:
    starts = [0]
    for _, count in spec.segments[:-1]:
        starts.append(starts[-1] + count)
    return starts


def _describe(spec: _UserSpec) -> str:
    total = sum(count for _, count in spec.segments)
    first_topic, first_count = spec.segments[0]
    if spec.gradual:
        last_topic = spec.segments[-1][0]
        middle = _segment_starts(spec)[-1]
        return (
            f"gradual drift from {first_topic} to {last_topic} over {total} events "
            f"(the share of {last_topic} rises steadily; half-way at event {middle})"
        )
    if len(spec.segments) == 1:
        text = f"stable: {first_topic} for all {total} events"
    else:
        text = f"{first_topic} for {first_count} events"
        seen = {first_topic}
        for (topic, count), start in zip(spec.segments[1:], _segment_starts(spec)[1:], strict=True):
            verb = "back to" if topic in seen else "switches to"
            text += f", then {verb} {topic} at event {start} ({count} events)"
            seen.add(topic)
    if spec.noise_topic:
        text += f", with ~{NOISE_RATE:.0%} {spec.noise_topic} noise"
    return text


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------

MINUTE = 60.0
HOUR = 3600.0
BURST_PROBABILITY = 0.15  # chance that the next engagement follows within minutes
# One engagement: always a view, maybe a click, then maybe like / rate / purchase.
_FUNNEL_EXTRAS = ("like", "rate", "purchase")
MAX_EVENTS_PER_ITEM = 2 + len(_FUNNEL_EXTRAS)
MEAN_EVENTS_PER_ITEM = 1.8  # preferred; heavier users engage more deeply instead of seeing more
UNSEEN_RESERVE = 8  # items of each topic a user never sees, left for recommendations


class _Slot(NamedTuple):
    """What one event position of a user's timeline is about."""

    segment: int
    topic: str
    on_topic: bool  # False for noise events


class _Run(NamedTuple):
    """Consecutive slots of one segment on one topic."""

    topic: str
    on_topic: bool
    length: int


class _Engagement(NamedTuple):
    item_id: str
    on_topic: bool
    events: int


def demo_events(seed: int = 7, start_ts: float = 1_735_689_600.0) -> list[DemoEvent]:
    """Every demo user's events, sorted by time. Each user has its own random stream, so one
    user's events do not depend on the others'."""
    pools = _items_by_topic(demo_catalog(seed))
    events: list[DemoEvent] = []
    for number, spec in enumerate(_USER_SPECS, start=1):
        rng = random.Random(f"demo-events:{seed}:{spec.user_id}")
        events.extend(_user_events(number, spec, pools, rng, start_ts))
    return sorted(events, key=lambda event: (event.ts, event.event_id))


def _items_by_topic(catalog: list[DemoItem]) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {topic: [] for topic in TOPICS}
    for item in catalog:
        pools[item.categories[0]].append(item.item_id)
    return pools


def _user_events(
    number: int,
    spec: _UserSpec,
    pools: dict[str, list[str]],
    rng: random.Random,
    start_ts: float,
) -> list[DemoEvent]:
    runs = _runs(_slots(spec, rng))
    items_per_run = _items_per_run(runs, pools, rng)
    engagements = _engagements(runs, items_per_run, pools, rng)
    return _timed_events(number, spec.user_id, engagements, rng, start_ts)


def _slots(spec: _UserSpec, rng: random.Random) -> list[_Slot]:
    total = sum(count for _, count in spec.segments)
    slots: list[_Slot] = []
    for segment, (topic, count) in enumerate(spec.segments):
        for _ in range(count):
            slot_topic, on_topic = _slot_topic(spec, topic, len(slots) / (total - 1), rng)
            slots.append(_Slot(segment, slot_topic, on_topic))
    return slots


def _slot_topic(
    spec: _UserSpec, topic: str, progress: float, rng: random.Random
) -> tuple[str, bool]:
    """The topic of one event; ``progress`` runs from 0 (first event) to 1 (last)."""
    if spec.gradual:
        start, end = spec.segments[0][0], spec.segments[-1][0]
        return (end if rng.random() < progress else start), True
    if spec.noise_topic and rng.random() < NOISE_RATE:
        return spec.noise_topic, False
    return topic, True


def _runs(slots: list[_Slot]) -> list[_Run]:
    return [
        _Run(topic, on_topic, sum(1 for _ in group))
        for (_, topic, on_topic), group in groupby(slots)
    ]


def _items_per_run(runs: list[_Run], pools: dict[str, list[str]], rng: random.Random) -> list[int]:
    """How many distinct items each run's events are spread over."""
    counts = [0] * len(runs)
    for topic in dict.fromkeys(run.topic for run in runs):
        indexes = [i for i, run in enumerate(runs) if run.topic == topic]
        lengths = [runs[i].length for i in indexes]
        budget = _item_budget(lengths, len(pools[topic]))
        for i, count in zip(indexes, _allocate(budget, lengths, rng), strict=True):
            counts[i] = count
    return counts


def _item_budget(run_lengths: list[int], pool_size: int) -> int:
    """Distinct items one user sees of one topic: about one per MEAN_EVENTS_PER_ITEM events,
    keeping UNSEEN_RESERVE items unseen where the runs allow it."""
    events = sum(run_lengths)
    least = sum(math.ceil(length / MAX_EVENTS_PER_ITEM) for length in run_lengths)
    if least > pool_size:
        raise ValueError(f"{events} events in {len(run_lengths)} runs need over {pool_size} items")
    most = max(least, min(events, pool_size - UNSEEN_RESERVE))
    return min(max(round(events / MEAN_EVENTS_PER_ITEM), least), most)


def _allocate(total: int, lengths: list[int], rng: random.Random) -> list[int]:
    """Split ``total`` items over runs: each run between ceil(length / max) and length items."""
    counts = [math.ceil(length / MAX_EVENTS_PER_ITEM) for length in lengths]
    for _ in range(total - sum(counts)):
        open_runs = [
            i for i, (count, n) in enumerate(zip(counts, lengths, strict=True)) if count < n
        ]
        room = [lengths[i] - counts[i] for i in open_runs]
        counts[rng.choices(open_runs, weights=room)[0]] += 1
    return counts


def _engagements(
    runs: list[_Run], items_per_run: list[int], pools: dict[str, list[str]], rng: random.Random
) -> list[_Engagement]:
    unseen: dict[str, list[str]] = {}
    engagements = []
    for run, item_count in zip(runs, items_per_run, strict=True):
        if run.topic not in unseen:
            unseen[run.topic] = rng.sample(pools[run.topic], len(pools[run.topic]))
        for size in _split(run.length, item_count, rng):
            engagements.append(_Engagement(unseen[run.topic].pop(), run.on_topic, size))
    return engagements


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` events as ``parts`` engagement sizes, each 1..MAX_EVENTS_PER_ITEM."""
    sizes = [1] * parts
    for _ in range(total - parts):
        open_parts = [i for i, size in enumerate(sizes) if size < MAX_EVENTS_PER_ITEM]
        sizes[rng.choice(open_parts)] += 1
    return sizes


def _timed_events(
    number: int,
    user_id: str,
    engagements: list[_Engagement],
    rng: random.Random,
    start_ts: float,
) -> list[DemoEvent]:
    clock = start_ts + rng.uniform(0.0, 12 * HOUR)
    events: list[DemoEvent] = []
    for position, engagement in enumerate(engagements):
        if position:
            clock += _gap_between_engagements(rng)
        for step, event_type in enumerate(_funnel(engagement.events, rng)):
            if step:
                clock += rng.uniform(0.5, 8.0) * MINUTE
            value = _rating(engagement.on_topic, rng) if event_type == "rate" else None
            events.append(
                DemoEvent(
                    event_id=f"demo-u{number:02d}-{len(events):04d}",
                    user_id=user_id,
                    item_id=engagement.item_id,
                    type=event_type,
                    ts=float(round(clock)),
                    value=value,
                )
            )
    return events


def _gap_between_engagements(rng: random.Random) -> float:
    if rng.random() < BURST_PROBABILITY:
        return rng.uniform(2.0, 20.0) * MINUTE
    return rng.uniform(2.0, 24.0) * HOUR


def _funnel(size: int, rng: random.Random) -> list[str]:
    """The event types of one engagement, in the order they happen."""
    extras = rng.sample(_FUNNEL_EXTRAS, max(0, size - 2))
    return ["view", "click"][:size] + sorted(extras, key=_FUNNEL_EXTRAS.index)


def _rating(on_topic: bool, rng: random.Random) -> float:
    """A 1..5 rating: high for the user's current interest, lower for noise."""
    weights = (0, 1, 2, 4, 5) if on_topic else (3, 3, 2, 1, 1)
    return float(rng.choices((1, 2, 3, 4, 5), weights=weights)[0])
