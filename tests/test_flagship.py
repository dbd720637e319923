"""The flagship demo runs end to end (shortened horizon) and writes what it promises."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np

import vht

ROOT = Path(__file__).resolve().parents[1]


def test_flagship_writes_hdf5_with_units_and_a_png(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vht.cli", "run", "experiments/flagship.py", "--minutes", "14",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"results: {tmp_path / 'flagship.h5'}" in result.stdout
    dataset = vht.load_dataset(tmp_path / "flagship.h5")
    assert dataset["circulation.mean_arterial_pressure"].dims == ("arm", "time")
    assert dataset["circulation.mean_arterial_pressure"].attrs["units"] == "mmHg"
    assert list(dataset["arm"].values) == ["no treatment", "fluids", "vasopressor",
                                           "fluids + vasopressor"]
    assert np.all(dataset["status"].values == 0)
    assert dataset.attrs["twin_builder"] == "physiology_models.twins:circulation_with_vasopressor"
    # the treatment rules act: fluids raise volume, the vasopressor raises resistance
    volume = dataset["circulation.blood_volume"].isel(time=-1)
    factor = dataset["effect.factor"].isel(time=-1)
    assert float(volume.sel(arm="fluids")) > float(volume.sel(arm="no treatment")) + 50
    assert float(factor.sel(arm="vasopressor")) > 1.1
    assert float(factor.sel(arm="no treatment")) == 1.0
    image = matplotlib.image.imread(tmp_path / "flagship.png")
    assert image.shape[0] > 400 and image.shape[1] > 600
    assert np.std(image[..., :3]) > 0.05  # not a blank canvas
