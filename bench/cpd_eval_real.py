"""Real annotated series that pip packages ship (nothing is downloaded at run time).

- ``nile``: statsmodels' ``datasets.nile``, the annual flow of the Nile at Aswan, 1871-1970
  (100 values, 10^8 m^3). Its documentation says "There is an apparent changepoint near
  1898", the change studied by Cobb (1978, Biometrika 65) and used as the standard example
  of a single mean shift since: the flow drops by about a fifth from 1898/1899 on (attributed
  to the start of the Aswan dam's construction and to a drier climate). Labelled at index 27,
  the year 1898, the first year of the lower regime as the packaged documentation gives it
  (within the 5-sample margin of 1899 either way).

Other statsmodels series were considered and left out: their documentation names no change
point (co2, sunspots, elnino, macrodata, danish_data, interest_inflation), and a label we
chose ourselves from economic history would not be an annotation anyone documented.
"""

from __future__ import annotations

import numpy as np

from cpd_eval_series import Series

NILE_CHANGE_YEAR = 1898


def nile() -> Series:
    """The Nile flow series, labelled with its documented change at 1898."""
    from statsmodels.datasets import nile as dataset  # the eval extra

    data = dataset.load().data
    years = np.asarray(data["year"], dtype=np.int64)
    values = np.asarray(data["volume"], dtype=np.float64)
    change = int(np.flatnonzero(years == NILE_CHANGE_YEAR)[0])
    return Series("nile", "real", values, years - years[0], (change,), False,
                  source="statsmodels.datasets.nile (Aswan, 1871-1970); change near 1898 per its documentation")


def available() -> list[Series]:
    """The real series whose package is installed (none without statsmodels)."""
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        return []
    return [nile()]
