"""Real labelled sets that aeon ships in its wheel (read offline, never downloaded).

Only the sets of ``ALLOWED`` can be loaded: the path is built from an allowed name alone, so
no other file of aeon's data folder is ever opened. ``HELD_OUT`` names six univariate UCR
sets kept as a judge of the matching models: asking for one is refused with its own message.
Each set keeps its published train/test split; steps are the capture indices (these
series are regularly sampled).

- ``UnitTest``: aeon's test set, 20 training and 22 test series of 24 values, 2 classes (a
  cut of the UCR archive's Chinatown: pedestrian counts per hour in Melbourne's Chinatown,
  weekdays against weekends).
- ``PickupGestureWiimoteZ``: the UCR archive's set of that name (Guna et al. 2014), the Z
  acceleration of a Wii remote during 10 kinds of pick-up gesture, 50 training and 50 test
  series of 29 to 361 values (unequal lengths).
- ``BasicMotions``: the UEA multivariate archive's set, 3-axis accelerometer and gyroscope
  of a smart watch (6 channels, 100 values) while standing, walking, running or playing
  badminton; 40 training and 40 test series.
- ``JapaneseVowels``: the UEA multivariate archive's set (Kudo et al. 1999), 12 LPC cepstrum
  coefficients (12 channels) of nine male speakers uttering the Japanese vowel /ae/, the
  class being the speaker; 270 training and 370 test utterances of 7 to 29 frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from match_eval_sets import LabelledSet, Series

ALLOWED = {
    "UnitTest": "aeon 1.6 datasets/data/UnitTest (a cut of UCR Chinatown: Melbourne pedestrian counts per "
                "hour, weekday against weekend; 1 channel, 24 captures)",
    "PickupGestureWiimoteZ": "aeon 1.6 datasets/data/PickupGestureWiimoteZ (UCR archive; Wii remote Z "
                             "acceleration of 10 pick-up gestures; 1 channel, 29 to 361 captures)",
    "BasicMotions": "aeon 1.6 datasets/data/BasicMotions (UEA archive; smart watch accelerometer and "
                    "gyroscope while standing, walking, running, playing badminton; 6 channels, 100 captures)",
    "JapaneseVowels": "aeon 1.6 datasets/data/JapaneseVowels (UEA archive; 12 LPC cepstrum coefficients of "
                      "nine speakers' /ae/, class = speaker; 12 channels, 7 to 29 captures)",
}
# held out as the judge of new matching models: never loaded, listed or scored here
HELD_OUT = frozenset({"GunPoint", "ItalyPowerDemand", "ArrowHead", "OSULeaf", "ACSF1", "Trace"})


def check_name(name: str) -> str:
    """``name`` if it is an allowed set; a ValueError for a held-out or any other name."""
    if name.casefold() in {h.casefold() for h in HELD_OUT}:
        raise ValueError(f"real set {name!r} is held out (a judge of the matching models): it is never loaded here")
    if name not in ALLOWED:
        raise ValueError(f"real set {name!r} is not on the allow-list; allowed: {', '.join(ALLOWED)}")
    return name


def data_folder() -> Path:
    import aeon  # the eval extra

    return Path(aeon.__file__).resolve().parent / "datasets" / "data"


def load(name: str) -> LabelledSet:
    """The allowed set ``name`` with its published train/test split."""
    name = check_name(name)
    from aeon.datasets import load_from_ts_file

    parts = {}
    for split in ("TRAIN", "TEST"):
        path = data_folder() / name / f"{name}_{split}.ts"
        X, y = load_from_ts_file(str(path))
        series = [_series(np.asarray(x, dtype=np.float64), path, k) for k, x in enumerate(X)]
        parts[split] = (series, [str(label) for label in y])
    (train, train_labels), (test, test_labels) = parts["TRAIN"], parts["TEST"]
    return LabelledSet(name, train, train_labels, test, test_labels, ALLOWED[name], {"real": True})


def _series(x: np.ndarray, path: Path, k: int) -> Series:
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: series {k} holds a missing or infinite value")
    return Series(x, np.arange(x.shape[1], dtype=np.int64))


def available(names: list[str] | None = None) -> list[LabelledSet]:
    """The allowed sets (or ``names`` of them) where aeon is installed; none otherwise."""
    chosen = [check_name(n) for n in (names if names is not None else list(ALLOWED))]
    try:
        import aeon  # noqa: F401
    except ImportError:
        return []
    return [load(n) for n in chosen]
