"""Named label taxonomies: which emotions a protocol keeps and which class each becomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from microexpr.samples import Sample

# Spelling variants across sheets (FORMATS.md, "Label spelling"), folded before any mapping.
_SPELLING = {
    "others": "others",
    "other": "others",
    "sad": "sadness",
    "happy": "happiness",
    "surprised": "surprise",
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "repressed": "repression",
    "contemptuous": "contempt",
}


def normalise_emotion(name: str) -> str:
    """Lower-case, trim and fold spelling variants (``Other``/``others``, ``sad``/``sadness``)."""
    key = " ".join(str(name).strip().lower().split())
    return _SPELLING.get(key, key)


@dataclass(frozen=True)
class Taxonomy:
    """Ordered class names plus the emotion -> class mapping; unmapped emotions are dropped."""

    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str] = field(default_factory=dict)

    def class_of(self, emotion: str) -> str | None:
        """Class name for a database emotion, or None when this taxonomy drops it."""
        emotion = normalise_emotion(emotion)
        if emotion in self.classes and emotion not in self.mapping:
            return emotion
        return self.mapping.get(emotion)

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)

    def apply(self, samples: list[Sample]) -> list[Sample]:
        """Relabel samples into this taxonomy's classes, dropping those it does not cover."""
        kept = []
        for sample in samples:
            cls = self.class_of(sample.label)
            if cls is not None:
                kept.append(sample.with_label(cls))
        return kept


_NEGATIVE = ("repression", "anger", "contempt", "disgust", "fear", "sadness")

TAXONOMIES: dict[str, Taxonomy] = {
    # MEGC2019 composite (MEGC pdf): everything not listed (others, tense, ...) is dropped.
    "composite3": Taxonomy(
        "composite3",
        ("negative", "positive", "surprise"),
        {**dict.fromkeys(_NEGATIVE, "negative"), "happiness": "positive", "surprise": "surprise"},
    ),
    "casme2-5": Taxonomy("casme2-5", ("happiness", "disgust", "repression", "surprise", "others")),
    "casme2-7": Taxonomy(
        "casme2-7",
        ("happiness", "disgust", "repression", "surprise", "sadness", "fear", "others"),
    ),
    # CASME II 3-class as in the composite: positive / negative / surprise, others dropped.
    "casme2-3": Taxonomy(
        "casme2-3",
        ("negative", "positive", "surprise"),
        {
            "disgust": "negative",
            "repression": "negative",
            "sadness": "negative",
            "fear": "negative",
            "happiness": "positive",
            "surprise": "surprise",
        },
    ),
    "samm-5": Taxonomy("samm-5", ("anger", "contempt", "happiness", "surprise", "others")),
    "smic-3": Taxonomy("smic-3", ("negative", "positive", "surprise")),
    "casme-4": Taxonomy("casme-4", ("tense", "surprise", "repression", "disgust")),
    "fer-7": Taxonomy(
        "fer-7", ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    ),
    "ck-7": Taxonomy(
        "ck-7", ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    ),
    "ck-8": Taxonomy(
        "ck-8",
        ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
    ),
}


def get(name: str) -> Taxonomy:
    """Taxonomy by name; the error lists the known names."""
    try:
        return TAXONOMIES[name]
    except KeyError:
        raise KeyError(
            f"unknown taxonomy {name!r}; known: {', '.join(sorted(TAXONOMIES))}"
        ) from None


def register(taxonomy: Taxonomy) -> Taxonomy:
    """Add a taxonomy (readers of later databases register theirs here)."""
    TAXONOMIES[taxonomy.name] = taxonomy
    return taxonomy
