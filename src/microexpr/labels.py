"""Named label taxonomies: which emotions a protocol keeps and which class each becomes."""

from __future__ import annotations

from dataclasses import dataclass, field

from microexpr.registry import Registry
from microexpr.samples import Sample

# Spelling variants across sheets (docs/datasets.md, "Label spelling"), folded before any mapping.
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

_BUILT_IN: dict[str, Taxonomy] = {
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
    # SAMM 3-class: the composite's grouping of SAMM's own emotions, Other dropped.
    "samm-3": Taxonomy(
        "samm-3",
        ("negative", "positive", "surprise"),
        {
            **dict.fromkeys(("anger", "contempt", "disgust", "fear", "sadness"), "negative"),
            "happiness": "positive",
        },
    ),
    # CAS(ME)^3 part A (Li et al., TPAMI 2022): 7 emotions; 4 = negative/positive/surprise/
    # others; 3 = negative/positive/surprise.
    "casme3-7": Taxonomy(
        "casme3-7",
        ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "others"),
    ),
    "casme3-4": Taxonomy(
        "casme3-4",
        ("negative", "positive", "surprise", "others"),
        {
            **dict.fromkeys(("anger", "disgust", "fear", "sadness"), "negative"),
            "happiness": "positive",
        },
    ),
    "casme3-3": Taxonomy(
        "casme3-3",
        ("negative", "positive", "surprise"),
        {
            **dict.fromkeys(("anger", "disgust", "fear", "sadness"), "negative"),
            "happiness": "positive",
        },
    ),
    "mmew-7": Taxonomy(
        "mmew-7",
        ("happiness", "anger", "surprise", "disgust", "fear", "sadness", "others"),
    ),
}

TAXONOMIES: Registry[Taxonomy] = Registry("taxonomy")
for _taxonomy in _BUILT_IN.values():
    TAXONOMIES.add(_taxonomy.name, _taxonomy)

# The taxonomies that apply to each database reader, for `microexpr datasets check` counts.
FOR_DATASET: dict[str, tuple[str, ...]] = {
    "casme2": ("casme2-5", "casme2-3", "casme2-7"),
    "samm": ("samm-5", "samm-3"),
    "smic": ("smic-3",),
    "casme": ("casme-4",),
    "casme3": ("casme3-7", "casme3-4", "casme3-3"),
    "mmew": ("mmew-7",),
    "fer2013": ("fer-7",),
    "ckplus": ("ck-7", "ck-8"),
    "composite": ("composite3",),
    "flow_images": ("composite3",),
}


def get(name: str) -> Taxonomy:
    """Taxonomy by name; the error lists the known names."""
    return TAXONOMIES.get(name)


def register(taxonomy: Taxonomy) -> Taxonomy:
    """Add a taxonomy (readers of later databases register theirs here)."""
    return TAXONOMIES.add(taxonomy.name, taxonomy)
