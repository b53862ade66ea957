"""Follow one face through a long recording and hold it still: the aligned face of every frame.

Detect once (dlib's HOG cascade of :mod:`microexpr.preprocess.faces`), then put the 68
landmarks on each frame inside the detector's box carried along by the face's own alignment
(a box drawn around the landmarks instead drifts: the landmark model expects the detector's
framing), which costs a few milliseconds instead of a detection's tens. Each frame is warped
into a fixed face square by the similarity that maps its stable landmarks (upper jaw line,
nose, eye corners: points that expressions barely move) onto the reference shape (the first
tracked frame's landmarks in that square), fitted by least squares over all of them and
averaged with its neighbours' (``FaceTracker.SMOOTH_S`` either side): dlib's landmarks are
whole pixels, and one frame's fit alone jitters by a good fraction of a micro-expression.
Head drift and turns therefore do not read as facial motion; the little rigid jitter left is
what the spotters' affine fit to each flow field removes. A face is shrunk by area averaging
before the warp (a bilinear shrink aliases differently at every sub-pixel position, which reads
as motion) and normalised to a fixed mean and contrast, so illumination flicker does not read
as motion either.

Per frame: ``found`` (a face was tracked), ``confidence`` (the lower of how well its 68
landmarks fit the reference shape after the similarity, 1 = exactly, and how well its aligned
face correlates with the last frame's) and ``lost`` (the track broke here: a confidence below
``min_confidence``, a jump, or a periodic detector check that found no face). After a loss
the detector looks again every ``redetect_every_s``. Frames larger than ``track_side`` are
shrunk for tracking; landmarks are kept in the original frame's pixels. The settings are the
tracking ones of :class:`~microexpr.analyze.settings.AnalyzeSettings`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

from microexpr.analyze.settings import AnalyzeSettings
from microexpr.errors import DataError
from microexpr.preprocess import faces

# Landmarks that expressions barely move: the upper jaw line, the nose, the eye corners.
STABLE_POINTS = (0, 1, 2, 14, 15, 16, *range(27, 36), 36, 39, 42, 45)
_CONFIDENCE_SCALE = 0.15  # RMS landmark misfit (in inter-ocular distances) of confidence 1/e
_NORMALISED_MEAN, _NORMALISED_STD = 128.0, 40.0


@dataclass
class FaceTrack:
    """The tracked face of every frame of one recording.

    ``faces``: (T, S, S) uint8 aligned, brightness-normalised gray faces (0 where no face).
    ``landmarks``: (T, 68, 2) float32 in the original frame's pixels (NaN where no face).
    ``reference``: (68, 2) the reference shape in the aligned square's coordinates.
    ``alignment``: (T, 2, 3) the map from each frame's original pixels into the aligned square
    (NaN where no face).
    """

    fps: float
    frame_size: tuple[int, int]  # (width, height) of the original frames
    faces: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray  # (T,) bool
    confidence: np.ndarray  # (T,) float32, 0 where no face
    lost: np.ndarray  # (T,) bool: the track broke at this frame
    reference: np.ndarray
    alignment: np.ndarray
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.found)

    def face_box(self, index: int, margin: float = 0.6) -> faces.Box | None:
        """Square box (original pixels) around frame ``index``'s landmarks, grown by
        ``margin`` of their extent on every side; None where no face was tracked."""
        if not self.found[index]:
            return None
        return faces.box_around(self.landmarks[index], margin)


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 rotation + uniform scale + translation taking ``source`` points onto ``target`` in
    the least-squares sense (Umeyama). Least squares over many points, not a robust fit of a
    few: dlib's landmarks are whole pixels, and a fit to a subset of them jumps by degrees."""
    src, dst = source.astype(np.float64), target.astype(np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    u, sigma, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign)) / max(float((a**2).sum() / len(src)), 1e-12)
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _scale(matrix: np.ndarray) -> float:
    """The uniform scale of a similarity."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _normalise(face: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fixed mean and contrast inside ``mask``: a global gain or offset change cancels."""
    values = face[mask].astype(np.float32)
    std = float(values.std()) or 1.0
    scaled = (face.astype(np.float32) - float(values.mean())) * (_NORMALISED_STD / std)
    return np.clip(scaled + _NORMALISED_MEAN, 0, 255).astype(np.uint8)


def _warp_face(gray: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` square that ``matrix`` maps ``gray`` into. A shrinking map first shrinks
    the face's part of the frame by area averaging: a bilinear warp alone would alias, by an
    amount that changes with each frame's sub-pixel position, which reads as motion."""
    scale = _scale(matrix)
    if scale >= 0.9:
        return cv2.warpAffine(
            gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    source = _apply(inverse, corners)
    h, w = gray.shape[:2]
    x0, y0 = np.clip(np.floor(source.min(axis=0)) - 2, 0, [w - 1, h - 1]).astype(int)
    x1, y1 = np.clip(np.ceil(source.max(axis=0)) + 3, [x0 + 1, y0 + 1], [w, h]).astype(int)
    small = cv2.resize(gray[y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # aligned = A x + t with x = (x_small / scale) + origin
    shifted = matrix.copy()
    shifted[:, :2] = matrix[:, :2] / scale
    shifted[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([x0, y0], np.float64)
    return cv2.warpAffine(
        small, shifted, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


class FaceTracker:
    """Tracks frames one at a time (:meth:`add`), then :meth:`result` gives the FaceTrack.

    A frame's alignment is the mean of its own and its neighbours' similarities (``SMOOTH_S``
    either side, within one unbroken track), which averages out most of the landmark jitter:
    each aligned face is therefore made a few frames after its frame arrives.
    """

    SMOOTH_S = 0.1

    def __init__(self, fps: float, settings: AnalyzeSettings | None = None, source: str = "video"):
        self.fps, self.settings, self.source = fps, settings or AnalyzeSettings(), source
        self.redetect_every = max(1, round(self.settings.redetect_every_s * fps))
        verify = self.settings.verify_every_s
        self.verify_every = max(1, round(verify * fps)) if verify > 0 else 0
        self.smooth = max(0, round(self.SMOOTH_S * fps))
        self.faces: list[np.ndarray] = []
        self.landmarks: list[np.ndarray] = []
        self.confidence: list[float] = []
        self.lost: list[bool] = []
        self.matrices: list[np.ndarray | None] = []  # tracking pixels -> aligned square
        self.pending: dict[int, np.ndarray] = {}  # tracked frames not yet aligned (gray)
        self.reference: np.ndarray | None = None  # aligned coordinates
        self.mask: np.ndarray | None = None
        self.previous: np.ndarray | None = None  # last landmarks, tracking pixels
        self.last_face: np.ndarray | None = None  # last tracked face, aligned, not normalised
        self.box_in_face: tuple[np.ndarray, float] | None = None  # detector box: centre, side
        self.alignment: list[np.ndarray] = []  # original pixels -> aligned square
        self.scale = 1.0  # tracking pixels per original pixel
        self.since_detection = 0  # frames since the detector last ran while lost
        self.frame_size: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------------

    def add(self, frame: np.ndarray) -> None:
        """Track one BGR (or gray) frame."""
        h, w = frame.shape[:2]
        self.frame_size = self.frame_size or (w, h)
        scale = self.scale = min(1.0, self.settings.track_side / max(h, w))
        gray = faces.to_gray(frame)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        index = len(self.matrices)
        marks, detected = self._landmarks(gray, index)
        confidence, matrix = self._fit(marks) if marks is not None else (0.0, None)
        if marks is not None:
            face = _warp_face(gray, matrix, self.settings.face_size)
            confidence = min(confidence, self._likeness(face))
            if confidence < self.settings.min_confidence or self._jumped(marks):
                marks, matrix = None, None
            else:
                self.last_face = face
        if marks is None:
            self._record_missing(lost=self.previous is not None)
            self.previous = None
            self._align(until=index)  # the track broke: align what it held
            return
        if detected is not None:  # the detector's box, held in the face square's coordinates
            x0, y0, x1, y1 = detected
            centre = _apply(matrix, np.array([[(x0 + x1) / 2, (y0 + y1) / 2]]))[0]
            self.box_in_face = (centre, max(x1 - x0, y1 - y0) * _scale(matrix))
        self.alignment.append(np.full((2, 3), np.nan))
        self.matrices.append(matrix)
        self.landmarks.append((marks / scale).astype(np.float32))
        self.confidence.append(confidence)
        self.lost.append(False)
        self.faces.append(np.zeros((self.settings.face_size,) * 2, np.uint8))
        self.pending[index] = gray
        self.previous = marks
        self._align(until=index - self.smooth + 1)

    def _align(self, until: int) -> None:
        """Aligned faces of the pending frames before ``until`` (their neighbours are in)."""
        for index in sorted(i for i in self.pending if i < until):
            gray = self.pending.pop(index)
            matrix = self._smoothed(index)
            self.faces[index] = _normalise(
                _warp_face(gray, matrix, self.settings.face_size), self.mask
            )
            self.alignment[index] = matrix @ np.diag([self.scale, self.scale, 1.0])

    def _smoothed(self, index: int) -> np.ndarray:
        """Mean similarity of frame ``index`` and its tracked neighbours in the same run."""
        chosen = [self.matrices[index]]
        for step in (-1, 1):
            for other in range(index + step, index + step * (self.smooth + 1), step):
                if not 0 <= other < len(self.matrices) or self.matrices[other] is None:
                    break
                chosen.append(self.matrices[other])
        return np.mean(chosen, axis=0)

    def _landmarks(
        self, gray: np.ndarray, index: int
    ) -> tuple[np.ndarray | None, faces.Box | None]:
        """(landmarks, the detector's box when it ran): from a detection when no face is
        tracked (every ``redetect_every`` frames), else in the tracked box, once the periodic
        check (when due) confirms a face there."""
        if self.previous is None:
            due = self.since_detection % self.redetect_every == 0
            self.since_detection += 1
            if not due:
                return None, None
            found = faces.detect_face(gray, upsample=self._upsample(gray))
            if found is None:
                return None, None
            self.since_detection = 0
            return faces.landmarks_in_box(gray, found.box), found.box
        box = self._tracked_box()
        if self.verify_every and index % self.verify_every == 0 and not self._confirmed(gray, box):
            return None, None
        return faces.landmarks_in_box(gray, box), None

    def _tracked_box(self) -> faces.Box:
        """The detector's box carried to the last tracked frame by its alignment: the
        landmark model then always sees the framing it was trained on (a box drawn around
        its own landmarks instead drifts, frame after frame)."""
        matrix = next(m for m in reversed(self.matrices) if m is not None)
        centre_in_face, side_in_face = self.box_in_face
        centre = _apply(cv2.invertAffineTransform(matrix), centre_in_face[None])[0]
        half = side_in_face / _scale(matrix) / 2
        return (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)

    @staticmethod
    def _upsample(gray: np.ndarray) -> int:
        """HOG finds faces of about 80 px and up; small frames get one upsampling."""
        return 1 if max(gray.shape) < 400 else 0

    def _confirmed(self, gray: np.ndarray, box: faces.Box) -> bool:
        """The detector still finds a face around ``box`` (a crop of twice its size)."""
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        around = (x0 - side / 2, y0 - side / 2, x1 + side / 2, y1 + side / 2)
        crop = faces.crop_box(gray, around, 160)  # the face is then about 80 px
        return faces.detect_face(crop, upsample=0, fallback=False) is not None

    def _fit(self, marks: np.ndarray) -> tuple[float, np.ndarray]:
        """(confidence, alignment matrix into the face square) of one frame's landmarks; the
        first tracked frame defines the reference shape."""
        s = self.settings
        if self.reference is None:
            alignment = faces.face_alignment(marks, s.face_size, s.eye_distance, s.eye_height)
            self.reference = alignment.points(marks)
            self.mask = faces.roi_mask((s.face_size, s.face_size), self.reference) > 0
        stable = list(STABLE_POINTS)
        matrix = _similarity(marks[stable], self.reference[stable])
        misfit = _apply(matrix, marks) - self.reference
        rms = float(np.sqrt((misfit**2).sum(axis=1).mean())) / _interocular(self.reference)
        return float(np.exp(-((rms / _CONFIDENCE_SCALE) ** 2))), matrix

    def _likeness(self, face: np.ndarray) -> float:
        """Correlation, inside the face, of this frame's face with the last tracked one (1 at
        the first): a blank, a cut or a hand over the face falls far below the changes of an
        expression, a head turn or the light."""
        if self.last_face is None:
            return 1.0
        a = face[self.mask].astype(np.float32)
        b = self.last_face[self.mask].astype(np.float32)
        a, b = a - a.mean(), b - b.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return max(0.0, float((a * b).sum()) / norm) if norm > 0 else 0.0

    def _jumped(self, marks: np.ndarray) -> bool:
        """The face centre moved more than one inter-ocular distance since the last frame."""
        if self.previous is None:
            return False
        moved = np.linalg.norm(marks.mean(axis=0) - self.previous.mean(axis=0))
        return bool(moved > _interocular(self.previous))

    def _record_missing(self, lost: bool) -> None:
        if lost:  # look for the face again from the next frame on
            self.since_detection = 0
            self.last_face = None
        self.alignment.append(np.full((2, 3), np.nan))
        self.matrices.append(None)
        self.faces.append(np.zeros((self.settings.face_size,) * 2, np.uint8))
        self.landmarks.append(np.full((68, 2), np.nan, np.float32))
        self.confidence.append(0.0)
        self.lost.append(lost)

    # ------------------------------------------------------------------------------------

    def result(self) -> FaceTrack:
        """The FaceTrack; a recording with no frames or no face anywhere is a DataError."""
        self._align(until=len(self.matrices))
        if not self.matrices:
            raise DataError(self.source, "has no frames")
        if self.reference is None:
            raise DataError(self.source, f"no face found in any of its {len(self.matrices)} frames")
        found = np.array([m is not None for m in self.matrices])
        notes = []
        if not found.all():
            notes.append(f"no face tracked in {int((~found).sum())} of {len(found)} frames")
        return FaceTrack(
            self.fps,
            self.frame_size,
            np.stack(self.faces),
            np.stack(self.landmarks),
            found,
            np.array(self.confidence, np.float32),
            np.array(self.lost),
            self.reference,
            np.stack(self.alignment),
            notes,
        )


def _interocular(landmarks: np.ndarray) -> float:
    left, right = faces.eye_centres(landmarks)
    return float(np.linalg.norm(right - left)) or 1.0


def track_face(
    frames: Iterable[np.ndarray],
    fps: float,
    settings: AnalyzeSettings | None = None,
    source: str = "video",
) -> FaceTrack:
    """The FaceTrack of ``frames`` (any iterable of BGR or gray uint8 frames)."""
    tracker = FaceTracker(fps, settings, source)
    for frame in frames:
        tracker.add(frame)
    return tracker.result()
