"""Find the face, put 68 landmarks on it, align it, crop it and its regions, follow it in a clip.

Detection is a cascade, because the tight 224x224 crops that public micro-expression sets ship
defeat dlib's HOG detector on about 7% of faces (29 of the composite's 442 at one upsampling):

1. dlib HOG at ``upsample`` (fast, the detector the 68-point model was trained with);
2. dlib HOG at ``upsample + 1`` (small faces);
3. dlib HOG on the image padded by a quarter of its size on each side (faces that touch the
   border: the detector's sliding window needs context around the face);
4. dlib's CNN (MMOD) detector, when ``mmod_human_face_detector.dat`` is found (the
   face-recognition-models package ships it); slow on a CPU (about 1 s per 224 px image) but
   it finds the rest;
5. OpenCV's Haar cascade, when ``haarcascade_frontalface_default.xml`` exists in ``cv2.data``
   (the opencv-contrib-python-headless 5.0 wheel ships no cascade files, so this stage is
   usually absent).

Landmarks are dlib's ``shape_predictor`` with ``shape_predictor_68_face_landmarks.dat`` from
the face-recognition-models package (iBUG 68 scheme, 0-based: jaw 0-16, brows 17-21 / 22-26,
nose 27-35, eyes 36-41 / 42-47, mouth 48-67; "right"/"left" below are the SUBJECT's sides, so
the subject's right eye (36-41) is on the image's left).

Clip tracking: landmarks are detected once, on a reference frame (the onset), and held; every
other frame is registered to the reference by a rigid (Euclidean) ECC alignment, which removes
head drift. Per-frame landmarks are the alternative (:func:`track_landmarks` with
``mode="per_frame"``), but dlib's landmark jitter (about 1 px at 200 fps) is as large as the
micro-expression itself and would add spurious motion to every flow field.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from microexpr.registry import Registry

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
CNN_MODEL = "mmod_human_face_detector.dat"
HAAR_MODEL = "haarcascade_frontalface_default.xml"

# Landmark index ranges (iBUG 68, 0-based); sides are the subject's.
_REGION_TABLE: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "brows": tuple(range(17, 27)),
    "nose": tuple(range(27, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "eyes": tuple(range(36, 48)),
    "mouth": tuple(range(48, 68)),
}
REGION_LANDMARKS: Registry[tuple[int, ...]] = Registry("region")
for _name, _indices in _REGION_TABLE.items():
    REGION_LANDMARKS.add(_name, _indices)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


# --------------------------------------------------------------------------------------------
# Models (loaded once per process)
# --------------------------------------------------------------------------------------------


def models_dir() -> Path:
    """Folder of the face-recognition-models package's model files.

    The package is located, not imported: its ``__init__`` needs ``pkg_resources``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "face-recognition-models is not installed (pip install face-recognition-models)"
        )
    return Path(spec.submodule_search_locations[0]) / "models"


@functools.cache
def _hog_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@functools.cache
def _shape_predictor():
    import dlib

    path = models_dir() / LANDMARK_MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path}: 68-landmark model missing")
    return dlib.shape_predictor(str(path))


@functools.cache
def _cnn_detector():
    import dlib

    path = models_dir() / CNN_MODEL
    return dlib.cnn_face_detection_model_v1(str(path)) if path.is_file() else None


@functools.cache
def _haar_detector() -> cv2.CascadeClassifier | None:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / HAAR_MODEL
    return cv2.CascadeClassifier(str(path)) if folder and path.is_file() else None


# --------------------------------------------------------------------------------------------
# Detection and landmarks
# --------------------------------------------------------------------------------------------


def to_gray(image: np.ndarray) -> np.ndarray:
    """Gray uint8 view of a BGR, BGRA or gray image (dlib and the detectors work on gray)."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


@dataclass(frozen=True)
class FaceBox:
    """A detected face: box in image pixels and the cascade stage that found it."""

    box: Box
    detector: str


def _largest(rects, shift: float = 0.0) -> Box | None:
    boxes = [
        (r.left() - shift, r.top() - shift, r.right() - shift, r.bottom() - shift) for r in rects
    ]
    return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None)


def detect_face(image: np.ndarray, upsample: int = 1, fallback: bool = True) -> FaceBox | None:
    """Largest face by the cascade in the module docstring; ``None`` when every stage fails."""
    gray = to_gray(image)
    hog = _hog_detector()
    box = _largest(hog(gray, upsample))
    if box is not None:
        return FaceBox(box, f"hog{upsample}")
    if not fallback:
        return None
    box = _largest(hog(gray, upsample + 1))
    if box is not None:
        return FaceBox(box, f"hog{upsample + 1}")
    pad = max(gray.shape) // 4
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    box = _largest(hog(padded, upsample), shift=pad)
    if box is not None:
        return FaceBox(box, "hog_padded")
    cnn = _cnn_detector()
    if cnn is not None:
        box = _largest([d.rect for d in cnn(gray, 1)])
        if box is not None:
            return FaceBox(box, "cnn")
    haar = _haar_detector()
    if haar is not None:
        found = haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        if len(found):
            x, y, w, h = max(found, key=lambda r: r[2] * r[3])
            return FaceBox((float(x), float(y), float(x + w), float(y + h)), "haar")
    return None


def landmarks_in_box(image: np.ndarray, box: Box) -> np.ndarray:
    """68 landmarks (x, y) float32 of the face in ``box`` (any box, detected or held)."""
    import dlib

    rect = dlib.rectangle(*(int(round(v)) for v in box))
    shape = _shape_predictor()(to_gray(image), rect)
    return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def detect_landmarks(
    image: np.ndarray, upsample: int = 1, fallback: bool = True
) -> np.ndarray | None:
    """(68, 2) float32 landmarks of the largest face in a BGR or gray image, or ``None``."""
    face = detect_face(image, upsample, fallback)
    return None if face is None else landmarks_in_box(image, face.box)


# --------------------------------------------------------------------------------------------
# Alignment and crops
# --------------------------------------------------------------------------------------------


def eye_centres(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres: means of landmarks 36-41 and 42-47."""
    return landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)


@dataclass(frozen=True)
class Alignment:
    """A 2x3 affine map from input pixels to an output image of ``size`` (width, height)."""

    matrix: np.ndarray
    size: tuple[int, int]

    def apply(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Warp an image (border pixels replicated, so crops near the edge stay face-like)."""
        return cv2.warpAffine(
            image, self.matrix, self.size, flags=interpolation, borderMode=cv2.BORDER_REPLICATE
        )

    def points(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) points into the output image."""
        pts = np.asarray(points, np.float64)
        return (pts @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(np.float32)

    def then(self, matrix: np.ndarray) -> Alignment:
        """This map preceded by another 2x3 map (e.g. a frame's registration to the onset)."""
        a = np.vstack([self.matrix, [0, 0, 1]])
        b = np.vstack([matrix, [0, 0, 1]])
        return Alignment((a @ b)[:2], self.size)


def face_alignment(
    landmarks: np.ndarray, size: int = 224, eye_distance: float = 0.5, eye_height: float = 0.3
) -> Alignment:
    """Similarity transform putting the eyes level, ``eye_distance * size`` apart, centred
    horizontally at ``eye_height * size`` from the top.

    The defaults are close to the framing of the MEGC2019 composite's published 224x224 crops
    (measured there: inter-ocular distance 0.52 of the width, eyes at 0.28 of the height),
    with a little more room above the brows.
    """
    left, right = eye_centres(np.asarray(landmarks, np.float64))
    delta = right - left
    angle = float(np.degrees(np.arctan2(delta[1], delta[0])))
    scale = eye_distance * size / max(float(np.hypot(*delta)), 1e-6)
    centre = (left + right) / 2.0
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    matrix[:, 2] += np.array([size / 2.0, eye_height * size]) - centre
    return Alignment(matrix, (size, size))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = 224,
    eye_distance: float = 0.5,
    eye_height: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(aligned face image, its landmarks) by :func:`face_alignment`."""
    alignment = face_alignment(landmarks, size, eye_distance, eye_height)
    return alignment.apply(image), alignment.points(landmarks)


def box_around(points: np.ndarray, margin: float = 0.1, square: bool = True) -> Box:
    """Bounding box of points, grown by ``margin`` of its size on every side."""
    x0, y0 = np.min(points, axis=0)
    x1, y1 = np.max(points, axis=0)
    w, h = x1 - x0, y1 - y0
    if square:
        side = max(w, h)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1, y0, y1 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
        w = h = side
    return (
        float(x0 - margin * w),
        float(y0 - margin * h),
        float(x1 + margin * w),
        float(y1 + margin * h),
    )


def crop_box(image: np.ndarray, box: Box, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Crop ``box`` (may extend past the image: edges are replicated) and resize it.

    ``size`` None keeps the box's own pixel size. One warp does crop, pad and resize.
    """
    x0, y0, x1, y1 = box
    if size is None:
        size = (max(1, round(x1 - x0)), max(1, round(y1 - y0)))
    out_w, out_h = (size, size) if isinstance(size, int) else size
    sx, sy = out_w / max(x1 - x0, 1e-6), out_h / max(y1 - y0, 1e-6)
    matrix = np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy]])
    shrinking = sx < 1 or sy < 1
    return Alignment(matrix, (out_w, out_h)).apply(
        image, cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def crop_face(
    image: np.ndarray, landmarks: np.ndarray, margin: float = 0.1, size: int | None = None
) -> np.ndarray:
    """Square crop around all 68 landmarks grown by ``margin`` (no rotation: see align_face)."""
    return crop_box(image, box_around(landmarks, margin), size)


def region_box(landmarks: np.ndarray, region: str, margin: float = 0.25) -> Box:
    """Box of a named region (``REGION_LANDMARKS``) grown by ``margin``; square."""
    return box_around(np.asarray(landmarks)[list(REGION_LANDMARKS.get(region))], margin)


def crop_region(
    image: np.ndarray,
    landmarks: np.ndarray,
    region: str,
    margin: float = 0.25,
    size: int | None = None,
) -> np.ndarray:
    """Crop one region: ``mouth`` is seed 000's input; brows, eyes, nose for region models."""
    return crop_box(image, region_box(landmarks, region, margin), size)


# --------------------------------------------------------------------------------------------
# Clips: registration and tracking
# --------------------------------------------------------------------------------------------


def register_to(
    reference: np.ndarray,
    frame: np.ndarray,
    motion: Literal["euclidean", "translation"] = "euclidean",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """2x3 map taking ``frame`` onto ``reference`` (warp the frame with it).

    OpenCV's ECC on gray images, rotation + translation (``euclidean``) or ``translation``
    only; when ECC does not converge, phase correlation gives a translation.
    """
    ref = to_gray(reference).astype(np.float32)
    img = to_gray(frame).astype(np.float32)
    kind = cv2.MOTION_EUCLIDEAN if motion == "euclidean" else cv2.MOTION_TRANSLATION
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    try:
        warp = np.eye(2, 3, dtype=np.float32)
        _, warp = cv2.findTransformECC(ref, img, warp, kind, criteria, mask, 5)
        # ECC returns the map from reference coordinates into the frame; invert it.
        return cv2.invertAffineTransform(warp)
    except cv2.error:
        (dx, dy), _ = cv2.phaseCorrelate(ref, img)
        return np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]])


def fourier_translate(image: np.ndarray, dx: float, dy: float, pad: int = 16) -> np.ndarray:
    """Image moved by (dx, dy) px by a phase ramp in the Fourier domain (float32).

    Unlike bilinear or cubic resampling it neither blurs nor changes the noise level by an
    amount that depends on the sub-pixel fraction, which matters when frames are compared
    by pixel differences. The image is mirrored outwards by ``pad`` px (plus the shift)
    first, so the periodic extension the FFT assumes has no jump at the border to ring from.
    """
    from scipy import ndimage

    margin = pad + int(np.ceil(max(abs(dx), abs(dy))))
    widths = ((margin, margin), (margin, margin)) + ((0, 0),) * (image.ndim - 2)
    data = np.pad(image.astype(np.float64), widths, mode="reflect")  # float32 FFT: ~1 grey off
    spectrum = np.fft.fftn(data, axes=(0, 1))
    moved = ndimage.fourier_shift(spectrum, (dy, dx) + (0.0,) * (data.ndim - 2))
    out = np.real(np.fft.ifftn(moved, axes=(0, 1)))
    return out[margin:-margin, margin:-margin].astype(np.float32)


def stabilise(
    frames: Sequence[np.ndarray],
    reference: int = 0,
    motion: Literal["translation", "euclidean"] = "euclidean",
) -> list[np.ndarray]:
    """Every frame registered to ``frames[reference]`` (removes small head drift).

    ``euclidean``: ECC rotation + translation, bilinear warp, same dtype as the input.
    ``translation``: ECC translation, moved by :func:`fourier_translate`; float32 output.
    Use it when frames are compared pixel by pixel (apex spotting).
    """
    if motion not in ("translation", "euclidean"):
        raise ValueError(f"motion must be 'translation' or 'euclidean', not {motion!r}")
    ref = frames[reference]
    h, w = ref.shape[:2]
    out = []
    for i, frame in enumerate(frames):
        if i == reference:
            out.append(frame.astype(np.float32) if motion == "translation" else frame)
        elif motion == "translation":
            dx, dy = register_to(ref, frame, "translation")[:, 2]
            out.append(fourier_translate(frame, dx, dy))
        else:
            out.append(Alignment(register_to(ref, frame), (w, h)).apply(frame))
    return out


def track_landmarks(
    frames: Sequence[np.ndarray],
    mode: Literal["hold", "per_frame"] = "hold",
    reference: int = 0,
    upsample: int = 1,
) -> np.ndarray | None:
    """(T, 68, 2) landmarks for a clip, or ``None`` when no face is found on the reference.

    ``hold``: detect on ``frames[reference]`` and repeat (pair with :func:`stabilise`);
    ``per_frame``: run the landmark model on every frame inside a box detected on that frame,
    falling back to the previous frame's box when detection fails there.
    """
    first = detect_face(frames[reference], upsample)
    if first is None:
        return None
    if mode == "hold":
        marks = landmarks_in_box(frames[reference], first.box)
        return np.repeat(marks[None], len(frames), axis=0)
    if mode != "per_frame":
        raise ValueError(f"mode must be 'hold' or 'per_frame', not {mode!r}")
    box, out = first.box, []
    for frame in frames:
        found = detect_face(frame, upsample, fallback=False)
        box = found.box if found is not None else box
        out.append(landmarks_in_box(frame, box))
    return np.stack(out)


def roi_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """uint8 mask (255 inside) of the convex hull of the landmarks: the face without background."""
    mask = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return mask
