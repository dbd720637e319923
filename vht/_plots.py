"""Matplotlib figures from result Datasets. Axes are labelled from the variables' units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from ._units import conversion_factor

_TIME_LABELS = {"s": "time [s]", "min": "time [min]", "h": "time [h]", "day": "time [day]"}


def plot_signal(
    dataset: xr.Dataset,
    name: str,
    ax: plt.Axes | None = None,
    *,
    time_unit: str = "min",
    by: str | None = None,
    band: tuple[float, float] | None = (0.05, 0.95),
    label: str | None = None,
    **line_kwargs,
) -> plt.Axes:
    """Plot variable ``name`` of ``dataset`` against time on ``ax``.

    With a batch dim ``by`` (default: the first non-time dim, if any) there is one line per
    entry, labelled by its coordinate; for a dim named ``member`` with more than 20 entries the
    median and a quantile ``band`` are drawn instead. Failed runs (NaN) are left out.
    """
    if name not in dataset:
        raise KeyError(f"{name!r} is not in the dataset; it has {', '.join(dataset.data_vars)}")
    ax = plt.gca() if ax is None else ax
    variable = dataset[name]
    time = dataset["time"].values * conversion_factor(dataset["time"].attrs.get("units", "min"),
                                                      time_unit)
    others = [d for d in variable.dims if d != "time"]
    if by is None and others:
        by = others[0]
    if by is None:
        ax.plot(time, variable.values, label=label or name, **line_kwargs)
    elif by == "member" and variable.sizes[by] > 20:
        values = variable.transpose(by, ...).values.reshape(variable.sizes[by], -1)
        low, mid, high = np.nanquantile(values, [band[0], 0.5, band[1]], axis=0)
        (line,) = ax.plot(time, mid, label=label or f"{name} (median)", **line_kwargs)
        ax.fill_between(time, low, high, alpha=0.25, color=line.get_color(),
                        label=f"{int(band[0] * 100)}-{int(band[1] * 100)} % of members")
    else:
        labels = dataset[by].values if by in dataset.coords else range(variable.sizes[by])
        for i, entry in enumerate(labels):
            ax.plot(time, variable.isel({by: i}).values, label=str(entry), **line_kwargs)
    unit = variable.attrs.get("units", "")
    label = variable.attrs.get("long_name", name.rpartition(".")[2].replace("_", " "))
    ax.set_ylabel(f"{label} [{unit}]" if unit and unit != "dimensionless" else label)
    ax.set_xlabel(_TIME_LABELS.get(time_unit, f"time [{time_unit}]"))
    ax.grid(True, alpha=0.3)
    return ax
